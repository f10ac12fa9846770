"""`nodeagent labels [--publish]` end to end: a fixture host's tree, the real API server, a kubeconfig."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nodeagent.cli import main
from tests.k8s.cluster import ApiServer
from tests.k8s.conftest import NODE

PROFILE = """\
apiVersion: nodeagent.io/v1alpha1
kind: NodeProfile
metadata: {name: gpu}
spec:
  nodeSelector: {matchLabels: {pool: gpu}}
  gpu:
    passthrough:
      - {vendor: "10de", device: "2330"}
  labels: {example.com/role: training}
  taints: [{key: nvidia.com/gpu, value: passthrough, effect: NoSchedule}]
"""


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def gpu_root(host_trees: Callable[[str], Path]) -> str:
    return str(host_trees("intel-2s-8gpu"))


@pytest.fixture
def profile(tmp_path: Path) -> str:
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE)
    return str(path)


@pytest.fixture
def publish_profile(tmp_path: Path) -> str:
    """PROFILE with its own label under nodeagent.io/: the admission policy refuses the agent any other."""
    path = tmp_path / "publish-profile.yaml"
    path.write_text(PROFILE.replace("example.com/role", "nodeagent.io/role"))
    return str(path)


def test_labels_text_and_json(gpu_root: str, profile: str) -> None:
    text = run("--root", gpu_root, "labels", "-f", profile)
    assert text.exit_code == 0, text.output
    assert text.output.startswith("LABEL")
    assert "nvidia.com/gpu.workload.config" in text.output and "nvidia.com/gpu=passthrough:NoSchedule" in text.output
    data = json.loads(run("--root", gpu_root, "labels", "-f", profile, "-o", "json").output)
    assert data["labels"]["example.com/role"] == "training"
    assert data["labels"]["nvidia.com/gpu.workload.config"] == "vm-passthrough"
    assert data["taints"] == [{"key": "nvidia.com/gpu", "value": "passthrough", "effect": "NoSchedule"}]
    assert data["annotations"]["nodeagent.io/owned-labels"].split(",") == sorted(data["labels"])


def test_prefix_and_nfd_switch(gpu_root: str) -> None:
    data = json.loads(run("--root", gpu_root, "labels", "-o", "json", "--no-nfd-labels",
                          "--prefix", "virt.example.com").output)
    assert "virt.example.com/ready-hpc" in data["labels"]
    assert "feature.node.kubernetes.io/cpu-cpuid.AVX512F" not in data["labels"]
    bad = run("--root", gpu_root, "labels", "--prefix", "Not_A_Domain")
    assert bad.exit_code == 2 and "prefix" in bad.output
    env = json.loads(run("--root", gpu_root, "labels", "-o", "json", env={"NODEAGENT_NFD_LABELS": "false"}).output)
    assert "feature.node.kubernetes.io/cpu-cpuid.AVX512F" not in env["labels"]


def test_bad_profile_exits_2_naming_the_field(gpu_root: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(PROFILE.replace("effect: NoSchedule", "effect: Sometimes"))
    result = run("--root", gpu_root, "labels", "-f", str(path))
    assert result.exit_code == 2
    assert "taints" in result.output and "Traceback" not in result.output


@pytest.mark.k8s
def test_publish_once(apiserver: ApiServer, kubeconfig: str, gpu_root: str, publish_profile: str) -> None:
    apiserver.add_node(NODE, labels={"pool": "gpu"})
    result = run("--root", gpu_root, "labels", "-f", publish_profile, "-o", "json", "--publish",
                 "--kubeconfig", kubeconfig, env={"NODE_NAME": NODE})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the "publishing to node …" notice goes to stderr
    assert data["published"]["node_patched"] is True and data["published"]["topology"] == "created"
    node = apiserver.node(NODE)
    assert node["metadata"]["labels"]["nvidia.com/gpu.workload.config"] == "vm-passthrough"
    assert node["metadata"]["labels"]["pool"] == "gpu"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "passthrough", "effect": "NoSchedule"}]
    zones = apiserver.topologies[NODE]["zones"]
    gpus = {z["name"]: r["capacity"] for z in zones for r in z["resources"] if r["name"].startswith("nvidia.com/")}
    assert gpus == {"node-0": "4"}  # the 4 vfio-bound H100s hang off NUMA node 0's root ports

    mark = apiserver.mark()
    versions = (node["metadata"]["resourceVersion"], apiserver.topologies[NODE]["metadata"]["resourceVersion"])
    again = run("--root", gpu_root, "labels", "-f", publish_profile, "--publish", "--kubeconfig", kubeconfig,
                "--node-name", NODE)
    assert again.exit_code == 0 and "already up to date" in again.output
    assert apiserver.count(since=mark, writes=True) == 0
    assert (apiserver.node(NODE)["metadata"]["resourceVersion"],
            apiserver.topologies[NODE]["metadata"]["resourceVersion"]) == versions


@pytest.mark.k8s
def test_publish_by_hand_with_the_control_planes_kubeconfig(apiserver: ApiServer, gpu_root: str) -> None:
    """The README's check, as an operator runs it: `tests/k8s/control-plane up DIR`, then the real
    `nodeagent` command with DIR/kubeconfig (cluster-admin, straight to the server); twice."""
    import subprocess
    import sys

    apiserver.add_node("by-hand")
    argv = [sys.executable, "-m", "nodeagent", "--root", gpu_root, "labels", "--publish", "--node-name", "by-hand",
            "--kubeconfig", str(apiserver.plane.kubeconfig)]
    first = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    node = apiserver.node("by-hand")
    assert node["metadata"]["annotations"]["nodeagent.io/owned-labels"]
    versions = (node["metadata"]["resourceVersion"], apiserver.topologies["by-hand"]["metadata"]["resourceVersion"])
    second = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and "already up to date" in second.stdout, second.stdout + second.stderr
    assert (apiserver.node("by-hand")["metadata"]["resourceVersion"],
            apiserver.topologies["by-hand"]["metadata"]["resourceVersion"]) == versions


@pytest.mark.k8s
def test_publish_skips_the_profile_on_a_node_it_does_not_select(
        apiserver: ApiServer, kubeconfig: str, gpu_root: str, publish_profile: str) -> None:
    apiserver.add_node(NODE, labels={"pool": "cpu"})
    result = run("--root", gpu_root, "labels", "-f", publish_profile, "--publish", "--kubeconfig", kubeconfig,
                 "--node-name", NODE)
    assert result.exit_code == 0
    assert "does not match the profile's nodeSelector (pool=gpu)" in result.output
    node = apiserver.node(NODE)
    assert "nodeagent.io/role" not in node["metadata"]["labels"] and not node["spec"].get("taints")


@pytest.mark.k8s
def test_publish_errors(apiserver: ApiServer, kubeconfig: str, gpu_root: str) -> None:
    no_name = run("--root", gpu_root, "labels", "--publish", "--kubeconfig", kubeconfig, env={"NODE_NAME": ""})
    assert no_name.exit_code == 2 and "NODE_NAME" in no_name.output
    missing = run("--root", gpu_root, "labels", "--publish", "--kubeconfig", kubeconfig, "--node-name", "ghost")
    assert missing.exit_code == 1 and "ghost" in missing.output and "404" in missing.output
    bad_config = run("--root", gpu_root, "labels", "--publish", "--kubeconfig", "/nonexistent", "--node-name", NODE)
    assert bad_config.exit_code == 2 and "/nonexistent" in bad_config.output
