"""Kubelet configuration where each distribution keeps it: kubeadm, OpenShift, k3s, RKE2, MicroK8s.

Each case writes the files as that distribution lays them out (file formats from its docs: a
KubeletConfiguration YAML/JSON, ``kubelet-arg`` lists in the Rancher config.yaml, one flag a line in
MicroK8s' args file, ``KUBELET_KUBEADM_ARGS`` in kubeadm-flags.env) into a generated minimal host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.hostgen import build_host
from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inventory import KubeletInfo


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return build_host("minimal", tmp_path / "host")


def write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def kubelet(root: Path) -> KubeletInfo:
    return discover(Host(str(root))).kubelet


def test_kubeadm_config_dropins_and_flags(root: Path) -> None:
    write(root, "/var/lib/kubelet/config.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\n"
          "kind: KubeletConfiguration\ncpuManagerPolicy: static\nreservedSystemCPUs: 0-1\n"
          "topologyManagerPolicy: none\n")
    write(root, "/etc/kubernetes/kubelet.conf.d/10-topology.conf", "apiVersion: kubelet.config.k8s.io/v1beta1\n"
          "kind: KubeletConfiguration\ntopologyManagerPolicy: single-numa-node\n")
    write(root, "/var/lib/kubelet/kubeadm-flags.env", 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint='
          'unix:///var/run/containerd/containerd.sock --memory-manager-policy=Static"\n')
    # kubeadm's kubelet kubeconfig lives at OpenShift's config path: it must not count as OpenShift.
    write(root, "/etc/kubernetes/kubelet.conf", "apiVersion: v1\nkind: Config\nclusters: []\n")
    info = kubelet(root)
    assert (info.flavour, info.config_path) == ("kubeadm", "/var/lib/kubelet/config.yaml")
    assert info.cpu_manager_policy == "static" and info.reserved_system_cpus == [0, 1]
    assert info.topology_manager_policy == "single-numa-node"  # the drop-in wins over the file
    assert info.memory_manager_policy == "Static"  # the flag wins over both


def test_openshift_kubelet_conf(root: Path) -> None:
    config = {"kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1",
              "cpuManagerPolicy": "static", "reservedSystemCPUs": "0-3", "topologyManagerPolicy": "restricted",
              "memoryManagerPolicy": "None"}
    write(root, "/etc/kubernetes/kubelet.conf", json.dumps(config, indent=2))  # MCO renders it as JSON
    info = kubelet(root)
    assert info.flavour == "openshift" and info.config_path == "/etc/kubernetes/kubelet.conf"
    assert info.reserved_system_cpus == [0, 1, 2, 3] and info.topology_manager_policy == "restricted"


def test_k3s_kubelet_args_over_its_dropins(root: Path) -> None:
    write(root, "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/00-k3s-defaults.conf",
          "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ntopologyManagerPolicy: none\n")
    write(root, "/etc/rancher/k3s/config.yaml", "write-kubeconfig-mode: \"0644\"\nkubelet-arg:\n"
          "  - cpu-manager-policy=static\n  - reserved-cpus=0-1\n  - topology-manager-policy=best-effort\n")
    info = kubelet(root)
    assert info.flavour == "k3s"
    assert (info.cpu_manager_policy, info.reserved_system_cpus, info.topology_manager_policy) == (
        "static", [0, 1], "best-effort")


def test_rke2_config_dropin_directory(root: Path) -> None:
    write(root, "/etc/rancher/rke2/config.yaml", "token: secret\n")
    write(root, "/etc/rancher/rke2/config.yaml.d/50-kubelet.yaml",
          "kubelet-arg:\n  - \"--cpu-manager-policy=static\"\n  - \"--topology-manager-scope=pod\"\n")
    info = kubelet(root)
    assert info.flavour == "rke2" and info.cpu_manager_policy == "static"
    assert info.topology_manager_scope == "pod"


def test_microk8s_args_file(root: Path) -> None:
    write(root, "/var/snap/microk8s/current/args/kubelet",
          "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config\n--cpu-manager-policy=static\n"
          "--reserved-cpus=0\n--topology-manager-policy restricted\n# a comment\n")
    info = kubelet(root)
    assert info.flavour == "microk8s" and info.config_path == "/var/snap/microk8s/current/args/kubelet"
    assert (info.cpu_manager_policy, info.reserved_system_cpus, info.topology_manager_policy) == (
        "static", [0], "restricted")


def test_no_kubelet_is_no_config(root: Path) -> None:
    info = kubelet(root)
    assert not info.config_present and info.flavour is None and info.config_readable


def test_k3s_appended_kubelet_args_and_map_valued_flags(root: Path) -> None:
    # config.yaml.d's "kubelet-arg+" appends to config.yaml's list (k3s' multiple config files); the
    # kubelet takes a flag's last value, --reserved-memory once per NUMA node.
    write(root, "/etc/rancher/k3s/config.yaml", "kubelet-arg:\n  - cpu-manager-policy=none\n")
    write(root, "/etc/rancher/k3s/config.yaml.d/90-nodeagent.yaml",
          "kubelet-arg+:\n  - cpu-manager-policy=static\n  - cpu-manager-policy-options=full-pcpus-only=true\n"
          "  - reserved-memory=0:memory=1Gi\n  - reserved-memory=1:memory=512Mi,hugepages-1Gi=1Gi\n")
    info = kubelet(root)
    assert info.cpu_manager_policy == "static"
    from nodeagent.discover.kubelet import effective_config

    config = effective_config(Host(str(root)))
    assert config["cpuManagerPolicyOptions"] == {"full-pcpus-only": "true"}
    assert config["reservedMemory"] == [{"numaNode": 0, "limits": {"memory": "1Gi"}},
                                        {"numaNode": 1, "limits": {"memory": "512Mi", "hugepages-1Gi": "1Gi"}}]
