"""NodeResourceTopology ``available``: live host facts, the kubelet's podresources API over real gRPC, the
pods fingerprint (k8stopologyawareschedwg/podfingerprint's format), and publishing it with zero rewrites."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.k8s import desired_state, publish_once
from nodeagent.k8s.podfingerprint import sign, xxh64
from nodeagent.k8s.podresources import KUBELET_SOCKET, gather_usage
from nodeagent.k8s.topology import build_topology
from nodeagent.k8s.usage import SOURCE_HOST, SOURCE_PODRESOURCES, TopologyUsage, host_usage
from tests.k8s.cluster import ApiServer
from tests.k8s.conftest import NODE
from tests.support.factories import gpu_node_inventory
from tests.support.trees import put_file, put_link

GIB = 2**30
GPU = "nvidia.com/GH100_H100_SXM5_80GB"


def resources(nrt: dict[str, Any], zone: int) -> dict[str, tuple[int, int, int]]:
    return {r["name"]: (int(r["capacity"]), int(r["allocatable"]), int(r["available"]))
            for r in nrt["zones"][zone]["resources"]}


def assert_consistent(nrt: dict[str, Any]) -> None:
    for zone in nrt["zones"]:
        for r in zone["resources"]:
            assert 0 <= int(r["available"]) <= int(r["allocatable"]) <= int(r["capacity"]), r
            assert all(str(int(r[k])) == r[k] for k in ("capacity", "allocatable", "available"))  # Quantity form


# --- the fingerprint -----------------------------------------------------------------------------------


def test_xxh64_reference_values() -> None:
    # The xxHash specification's published digests of the empty input and of "a" (seed 0).
    assert xxh64(b"") == 0xEF46DB3751D8E999
    assert xxh64(b"a") == 0xD24EC4F1A98C6E5B
    # Inputs over 32 bytes take the four-lane path; a different seed must change the digest.
    long = bytes(range(100))
    assert xxh64(long) != xxh64(long, seed=1)


def test_fingerprint_matches_podfingerprints_compat_vector_in_any_order() -> None:
    # podfingerprint's testdata/compat-tiny-3pods-1ns: three pods in "production" → this signature.
    pods = [("production", "jaeger-dpgjk"), ("production", "nginx-rt684"), ("production", "envoy-g9m22")]
    assert sign(pods) == "pfp0v001607b76a0e9d3aeb4"
    assert sign(reversed(pods)) == "pfp0v001607b76a0e9d3aeb4"
    assert sign(pods[:2]) != sign(pods)
    # the namespace seeds the name's hash: moving a pod to another namespace changes the fingerprint
    assert sign([("staging", "jaeger-dpgjk"), *pods[1:]]) != sign(pods)


# --- available from host facts (pure) ------------------------------------------------------------------


def test_available_from_host_usage_per_zone() -> None:
    inv = gpu_node_inventory()
    node0 = inv.numa[0]
    inv = replace(inv, numa=[replace(node0, memory_free_bytes=10 * GIB + 12345,
                                     hugepages={"1Gi": replace(node0.hugepages["1Gi"], free=1)}), *inv.numa[1:]])
    vfio_gpu = next(g for g in inv.gpus if g.driver == "vfio-pci")
    usage = TopologyUsage(SOURCE_HOST, held_gpus=frozenset({vfio_gpu.address}), pinned_cpus=frozenset({1, 2, 9}))
    nrt = build_topology(inv, "n", usage=usage)
    assert nrt is not None
    assert_consistent(nrt)
    zone0 = resources(nrt, 0)
    assert zone0["cpu"] == (8, 7, 5)  # CPUs 1 and 2 are pinned by a VM (CPU 0 is kubelet-reserved)
    assert zone0["hugepages-1Gi"] == (4 * GIB, 4 * GIB, 1 * GIB)  # one page free
    assert zone0["memory"] == (64 * GIB, 60 * GIB, 10 * GIB)  # free memory in whole GiB
    assert zone0[GPU] == (1, 1, 0)  # its only vfio GPU is held
    assert resources(nrt, 1)["cpu"] == (8, 7, 6)  # CPU 9 pinned on node-1
    assert not [a for a in nrt["attributes"] if a["name"].startswith("nodeTopologyPods")]  # host facts name no pods


def test_without_usage_available_is_allocatable() -> None:
    nrt = build_topology(gpu_node_inventory(), "n")
    assert nrt is not None
    for name, (_, allocatable, available) in resources(nrt, 0).items():
        assert available == allocatable, name


# --- available from host facts: a dense-GPU fixture with a running VM -------------------------------------


def _short_root(tree: Path) -> Path:
    """A copy of a fixture tree under a short path: a unix socket path must fit in 108 bytes."""
    dest = Path(tempfile.mkdtemp(prefix="na", dir="/tmp")) / "r"
    shutil.copytree(tree, dest, symlinks=True)
    return dest


@pytest.fixture
def dense_gpu_root(host_trees: Callable[[str], Path]) -> Iterator[Path]:
    """intel-2s-8gpu (node 0: 32 of 64 x 1Gi pages free; GPUs 0-3 on vfio-pci), plus a running VM.

    The VM's QEMU (pid 4242) holds /dev/vfio/21 and /dev/vfio/22 (GPUs 18:00.0 and 19:00.0) open, and
    pins its two vCPU threads to CPUs 4 and 5 alone, as libvirt vcpupin / KubeVirt dedicatedCpuPlacement do.
    """
    root = _short_root(host_trees("intel-2s-8gpu"))
    put_file(root, "proc/4242/comm", "qemu-system-x86\n")
    put_file(root, "proc/4242/cmdline", "qemu-system-x86_64\0-uuid\0b1f5c2de-0000-4000-8000-000000000001\0")
    put_link(root, "proc/4242/fd/0", "/dev/null")
    put_link(root, "proc/4242/fd/31", "/dev/vfio/vfio")  # the container: not a group
    put_link(root, "proc/4242/fd/32", "/dev/vfio/21")
    put_link(root, "proc/4242/fd/33", "/dev/vfio/22")
    for tid, (vcpu, cpu) in {4250: (0, 4), 4251: (1, 5)}.items():
        put_file(root, f"proc/4242/task/{tid}/comm", f"CPU {vcpu}/KVM\n")
        put_file(root, f"proc/4242/task/{tid}/status", f"Name:\tCPU {vcpu}/KVM\nCpus_allowed_list:\t{cpu}\n")
    put_file(root, "proc/4242/task/4242/comm", "qemu-system-x86\n")
    put_file(root, "proc/4242/task/4242/status", "Name:\tqemu-system-x86\nCpus_allowed_list:\t0-223\n")
    put_file(root, "proc/777/comm", "bash\n")  # another process, no vfio
    put_link(root, "proc/777/fd/0", "/dev/pts/0")
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


def _dense(root: Path) -> tuple[Host, Inventory]:
    host = Host(str(root))
    return host, discover(host)


def test_host_usage_on_the_dense_gpu_fixture(dense_gpu_root: Path) -> None:
    host, inv = _dense(dense_gpu_root)
    usage = gather_usage(host, inv)  # no kubelet socket under this root: host facts
    assert usage.source == SOURCE_HOST
    assert usage.held_gpus == {"0000:18:00.0", "0000:19:00.0"}
    assert usage.pinned_cpus == {4, 5}
    nrt = build_topology(inv, NODE, usage=usage)
    assert nrt is not None
    assert_consistent(nrt)
    zone0, zone1 = resources(nrt, 0), resources(nrt, 1)
    assert zone0[GPU] == (4, 4, 2)  # four vfio GPUs, two held by the VM
    assert GPU not in zone1  # node 1's GPUs are on the host driver: not advertised
    assert zone0["hugepages-1Gi"] == (64 * GIB, 64 * GIB, 32 * GIB)  # exactly the free pages
    assert zone1["hugepages-1Gi"] == (64 * GIB, 64 * GIB, 64 * GIB)
    cpu_cap, cpu_alloc, cpu_avail = zone0["cpu"]
    assert cpu_alloc == cpu_cap - 4 and cpu_avail == cpu_alloc - 2  # kubelet reserves 0,1,112,113; the VM pins 4,5
    free0 = inv.numa[0].memory_free_bytes
    assert free0 is not None and zone0["memory"][2] == free0 // GIB * GIB


def test_no_proc_entries_means_nothing_held(host_trees: Callable[[str], Path]) -> None:
    host = Host(str(host_trees("intel-2s-8gpu")))
    usage = host_usage(host, discover(host))
    assert usage.held_gpus == frozenset() and usage.pinned_cpus == frozenset()


# --- the kubelet's podresources API over a real gRPC server --------------------------------------------


def _numa(api_pb2: Any, node: int) -> Any:
    return api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=node)])


@pytest.fixture
def kubelet_socket(dense_gpu_root: Path) -> Iterator[Path]:
    """A gRPC server speaking podresources v1 on <root>/var/lib/kubelet/pod-resources/kubelet.sock.

    Two pods: a KubeVirt virt-launcher with one GPU (18:00.0, node 0), CPUs 10-13 and 8 x 1Gi pages
    on node 0; a DPDK pod with CPUs 60-61 (node 1) and 2 GiB of memory on node 1; and a pod with
    nothing exclusive. Allocatable: the four vfio GPUs on node 0 and every CPU but 0, 1, 112, 113.
    """
    import grpc

    from nodeagent.k8s.podresources_v1 import api_pb2, api_pb2_grpc

    gpus = ["0000:18:00.0", "0000:19:00.0", "0000:4b:00.0", "0000:4c:00.0"]

    class Lister(api_pb2_grpc.PodResourcesListerServicer):
        def List(self, request: Any, context: Any) -> Any:  # noqa: N802 (the proto's name)
            launcher = api_pb2.PodResources(namespace="vms", name="virt-launcher-gpu-vm-x7k2p", containers=[
                api_pb2.ContainerResources(
                    name="compute", cpu_ids=[10, 11, 12, 13],
                    devices=[api_pb2.ContainerDevices(resource_name=GPU, device_ids=["0000:18:00.0"],
                                                      topology=_numa(api_pb2, 0))],
                    memory=[api_pb2.ContainerMemory(memory_type="hugepages-1Gi", size=8 * GIB,
                                                    topology=_numa(api_pb2, 0))])])
            dpdk = api_pb2.PodResources(namespace="net", name="dpdk-0", cpu_ids=[60, 61], containers=[
                api_pb2.ContainerResources(name="app", cpu_ids=[60, 61], memory=[
                    api_pb2.ContainerMemory(memory_type="memory", size=2 * GIB, topology=_numa(api_pb2, 1))])])
            plain = api_pb2.PodResources(namespace="default", name="web-1", containers=[
                api_pb2.ContainerResources(name="nginx")])
            return api_pb2.ListPodResourcesResponse(pod_resources=[launcher, dpdk, plain])

        def GetAllocatableResources(self, request: Any, context: Any) -> Any:  # noqa: N802
            cpus = [c for c in range(224) if c not in {0, 1, 112, 113}]
            return api_pb2.AllocatableResourcesResponse(
                cpu_ids=cpus,
                devices=[api_pb2.ContainerDevices(resource_name=GPU, device_ids=[g], topology=_numa(api_pb2, 0))
                         for g in gpus])

    sock = dense_gpu_root / KUBELET_SOCKET.lstrip("/")
    sock.parent.mkdir(parents=True, exist_ok=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(Lister(), server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    yield sock
    server.stop(None)


def test_podresources_usage_over_grpc(dense_gpu_root: Path, kubelet_socket: Path) -> None:
    host, inv = _dense(dense_gpu_root)
    usage = gather_usage(host, inv)
    assert usage.source == SOURCE_PODRESOURCES
    assert usage.pods is not None and sorted(usage.pods) == [
        ("default", "web-1"), ("net", "dpdk-0"), ("vms", "virt-launcher-gpu-vm-x7k2p")]
    nrt = build_topology(inv, NODE, usage=usage)
    assert nrt is not None
    assert_consistent(nrt)
    zone0, zone1 = resources(nrt, 0), resources(nrt, 1)
    assert zone0[GPU] == (4, 4, 3)  # the kubelet assigned one GPU (the VM's /dev/vfio is not counted twice)
    assert zone0["hugepages-1Gi"][2] == 56 * GIB  # 64 pages allocatable, 8 assigned
    assert zone0["cpu"] == (112, 108, 104)  # allocatable: all but 0, 1, 112, 113 (node 0); 10-13 assigned
    assert zone1["cpu"] == (112, 112, 110)  # 60-61 assigned (listed for pod and container: counted once)
    assert zone1["memory"][2] == zone1["memory"][1] - 2 * GIB
    attrs = {a["name"]: a["value"] for a in nrt["attributes"]}
    assert attrs["nodeTopologyPodsFingerprint"] == sign(
        [("vms", "virt-launcher-gpu-vm-x7k2p"), ("net", "dpdk-0"), ("default", "web-1")])
    assert attrs["nodeTopologyPodsFingerprintMethod"] == "all"
    assert attrs["topologyManagerPolicy"]  # the kubelet attributes stay


def test_a_socket_that_does_not_answer_falls_back_to_host_facts(dense_gpu_root: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    import socket

    path = dense_gpu_root / KUBELET_SOCKET.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))  # bound, never accepting: the kubelet is down
    try:
        host, inv = _dense(dense_gpu_root)
        usage = gather_usage(host, inv, timeout=0.5)
    finally:
        listener.close()
    assert usage.source == SOURCE_HOST and usage.held_gpus == {"0000:18:00.0", "0000:19:00.0"}
    assert "podresources unavailable" in caplog.text


# --- acceptance: publish it, then publish again and write nothing ----------------------------------------


@pytest.mark.k8s
def test_dense_gpu_node_publishes_exactly_what_is_free_then_writes_nothing(
        dense_gpu_root: Path, apiserver: ApiServer, kube_api: Any) -> None:
    # Against the real API server (tests/k8s/control-plane), as the agent's own ServiceAccount.
    host, inv = _dense(dense_gpu_root)
    apiserver.add_node(NODE)
    want = desired_state(inv, node_name=NODE, usage=gather_usage(host, inv))
    assert publish_once(kube_api, NODE, want).topology == "created"
    stored = kube_api.get_topology(NODE)
    zone0 = resources(stored, 0)
    assert zone0[GPU][2] == 2 and zone0["hugepages-1Gi"][2] == 32 * GIB
    assert resources(stored, 1)["hugepages-1Gi"][2] == 64 * GIB

    mark = apiserver.mark()
    again = desired_state(inv, node_name=NODE, usage=gather_usage(host, inv))
    result = publish_once(kube_api, NODE, again)
    assert result.topology == "unchanged" and not result.node_patched
    assert apiserver.count(writes=True, since=mark) == 0
