"""Label-driven scheduling, end to end: nodeagent publishes fixture hosts as Nodes, and the real
kube-scheduler (tests/k8s/control-plane) places pods shaped like the virt-launcher pods of the
reference VM recipes by those labels and taints.

There is no kubelet: the test registers each Node (Ready, with allocatable) as kubelet would, and
the agent's publisher (as its own ServiceAccount, bound to that node) adds its labels and taints.
The nodeSelectors, affinities and tolerations below are the recipes' own (realtime/NFV, HPC,
ultra-perf, AI training, database, high-density, general), plus nodeagent's readiness label for
each and ``kubevirt.io/schedulable`` as every virt-launcher pod carries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nodeagent.k8s import desired_state, publish_once
from tests.k8s.cluster import ApiServer, KubeError

pytestmark = pytest.mark.k8s

PODS = "/api/v1/namespaces/default/pods"
LAUNCHER_IMAGE = "quay.io/kubevirt/virt-launcher:v1.5.0"

#: node name → (fixture host, profile in daemonset/profiles or None, pool label the profile selects)
FLEET = {
    "gpu-1": ("intel-2s-8gpu", "ai-training", "gpu"),
    "db-1": ("intel-2s-8gpu", "database", "database"),
    "dense-1": ("amd-nps4-consumer", "high-density", "high-density"),
    "rt-1": ("rt-isolated", "realtime-nfv", "realtime"),
    "desktop-1": ("desktop-no-iommu", None, None),
    "small-1": ("minimal", None, None),
}


def toleration(key: str, value: str | None = None) -> dict[str, str]:
    if value is None:
        return {"key": key, "operator": "Exists", "effect": "NoSchedule"}
    return {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}


#: workload → (nodeSelector, tolerations, podAntiAffinity one per node) as the recipes write them.
WORKLOADS: dict[str, tuple[dict[str, str], list[dict[str, str]], bool]] = {
    "realtime": ({"realtime": "true", "feature.node.kubernetes.io/cpu-cpuid.RTSCHED": "true"},
                 [toleration("realtime", "true")], False),
    "hpc": ({"realtime": "true", "feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true",
             "topology.kubernetes.io/numa-nodes": "2"}, [toleration("hpc-node")], False),
    "ultra-perf": ({"feature.node.kubernetes.io/numa": "true"}, [toleration("high-performance")], False),
    "ai-training": ({"nvidia.com/gpu.workload.config": "vm-passthrough"},
                    [toleration("nvidia.com/gpu", "passthrough")], True),
    "database": ({"nodeagent.io/dedicated": "database"}, [toleration("dedicated", "database")], False),
    "high-density": ({"nodeagent.io/overcommit": "true"}, [], False),
    "general": ({}, [], False),
}
#: nodeagent's readiness label each workload's VMs add to the recipe's selector.
READY = {"realtime": "realtime", "hpc": "hpc", "ultra-perf": "general", "ai-training": "ai-training",
         "database": "database", "high-density": "high-density", "general": "general"}


def launcher_pod(workload: str, index: int) -> dict[str, Any]:
    selector, tolerations, one_per_node = WORKLOADS[workload]
    labels = {"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": f"{workload}-{index}", "workload": workload}
    spec: dict[str, Any] = {
        "nodeSelector": {**selector, "kubevirt.io/schedulable": "true",
                         f"nodeagent.io/ready-{READY[workload]}": "true"},
        "tolerations": tolerations,
        "containers": [{"name": "compute", "image": LAUNCHER_IMAGE,
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
    }
    if one_per_node:
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"workload": workload}}, "topologyKey": "kubernetes.io/hostname"}]}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"virt-launcher-{workload}-{index}",
                                                           "labels": labels}, "spec": spec}


def placed(apiserver: ApiServer, pod: dict[str, Any], timeout: float = 60) -> str | None:
    """Create the pod; the node the scheduler binds it to, or None once it reports it unschedulable."""
    name = apiserver.admin.create(PODS, pod)["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = apiserver.admin.get(f"{PODS}/{name}")
        if current["spec"].get("nodeName"):
            return str(current["spec"]["nodeName"])
        for condition in current.get("status", {}).get("conditions", []):
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return None
        time.sleep(0.1)
    raise AssertionError(f"the scheduler neither bound nor refused {name} in {timeout} s")


def delete_pods(apiserver: ApiServer, workload: str) -> None:
    apiserver.admin.delete(PODS, labelSelector=f"workload={workload}", gracePeriodSeconds="0")
    deadline = time.monotonic() + 30
    while apiserver.admin.get(PODS, labelSelector=f"workload={workload}")["items"]:
        assert time.monotonic() < deadline, "pods not deleted"
        time.sleep(0.1)


@pytest.fixture
def fleet(apiserver: ApiServer, host_trees: Callable[[str], Path], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Register FLEET's nodes, and a `publish(node, inventory=None, profile=…)` as each node's agent."""
    from nodeagent.daemon.profiles import load_file
    from nodeagent.discover import discover
    from nodeagent.host import Host
    from nodeagent.k8s.client import connect

    repo = Path(__file__).resolve().parents[2]
    inventories = {host: discover(Host(str(host_trees(host)))) for host, _, _ in FLEET.values()}
    # gpu-1 is the HGX host once its ai-training profile is applied: the recipe's 128Gi of 2Mi pages.
    node_inventories = {node: inventories[host] for node, (host, _, _) in FLEET.items()}
    node_inventories["gpu-1"] = with_2mi_pages(inventories["intel-2s-8gpu"], 65536)
    apis = {}
    for node, (host, _profile, pool) in FLEET.items():
        labels = {"kubernetes.io/hostname": node, "kubevirt.io/schedulable": "true"}  # virt-handler's label
        if pool:
            labels["nodeagent.io/pool"] = pool
        cpus = str(len(inventories[host].cpu.online) or 4)
        apiserver.add_node(node, labels=labels, allocatable={"cpu": cpus, "memory": "256Gi", "pods": "110"})
        apis[node] = connect(apiserver.plane.agent_kubeconfig(tmp_path / f"{node}.kubeconfig", node))

    def publish(node: str, inventory: Any = None, profile: str | None = "default") -> None:
        _, default_profile, _ = FLEET[node]
        name = default_profile if profile == "default" else profile
        loaded = load_file(f"{name}.yaml", str(repo / "daemonset" / "profiles" / f"{name}.yaml")).profile \
            if name else None
        publish_once(apis[node], node, desired_state(inventory or node_inventories[node], loaded, node_name=node))

    publish.inventories = node_inventories  # type: ignore[attr-defined]
    for node in FLEET:
        publish(node)
    yield publish
    for api in apis.values():
        api.close()


def with_2mi_pages(inventory: Any, count: int) -> Any:
    """The inventory with ``count`` 2Mi pages configured, spread evenly over its NUMA nodes."""
    from nodeagent.inventory import HugepagePool

    share = count // len(inventory.numa)
    numa = [replace(node, hugepages={**node.hugepages, "2Mi": HugepagePool("2Mi", 2048, share, share, 0)})
            for node in inventory.numa]
    pools = {**inventory.memory.hugepages, "2Mi": HugepagePool("2Mi", 2048, count, count, 0, 0)}
    return replace(inventory, numa=numa, memory=replace(inventory.memory, hugepages=pools))


def ready_nodes(apiserver: ApiServer, workload: str) -> set[str]:
    """Where the recipe's pod may go, read from the Nodes as published: every selector label, every
    NoSchedule taint tolerated."""
    selector, tolerations, _ = WORKLOADS[workload]
    wanted = {**selector, f"nodeagent.io/ready-{READY[workload]}": "true"}
    tolerated = {t["key"] for t in tolerations}
    found = set()
    for node in FLEET:
        obj = apiserver.node(node)
        labels = obj["metadata"].get("labels", {})
        taints = obj["spec"].get("taints", [])
        if all(labels.get(k) == v for k, v in wanted.items()) and all(t["key"] in tolerated for t in taints):
            found.add(node)
    return found


def test_each_workload_lands_only_on_nodes_ready_for_it(fleet: Any, apiserver: ApiServer) -> None:
    expected = {workload: ready_nodes(apiserver, workload) for workload in WORKLOADS}
    # What the fixture fleet is: each recipe has its hosts, except HPC, whose seed selector asks for a
    # realtime-ready host with two NUMA nodes (no fixture host is both).
    assert expected == {"realtime": {"rt-1"}, "hpc": set(), "ultra-perf": {"dense-1"}, "ai-training": {"gpu-1"},
                        "database": {"db-1"}, "high-density": {"dense-1"}, "general": {"dense-1"}}
    for workload, nodes in expected.items():
        bound = placed(apiserver, launcher_pod(workload, 1))
        assert (bound in nodes) if nodes else bound is None, (workload, bound, nodes)
    # The recipe's podAntiAffinity: one AI-training VM per GPU node, so a second waits.
    assert placed(apiserver, launcher_pod("ai-training", 2)) is None


def test_profile_taints_keep_other_pods_off(fleet: Any, apiserver: ApiServer) -> None:
    tainted = {node for node in FLEET if apiserver.node(node)["spec"].get("taints")}
    assert tainted == {"gpu-1", "db-1", "rt-1"}  # nvidia.com/gpu, dedicated=database, realtime (profiles)
    assert all(apiserver.node(n)["metadata"]["labels"]["nodeagent.io/ready-general"] == "true" for n in tainted)
    for index in range(4):  # general-purpose VMs: ready on the tainted nodes too, but never land there
        assert placed(apiserver, launcher_pod("general", index)) == "dense-1"


def test_a_node_that_loses_readiness_stops_receiving_new_ones(fleet: Any, apiserver: ApiServer) -> None:
    assert placed(apiserver, launcher_pod("ai-training", 1)) == "gpu-1"
    assert placed(apiserver, launcher_pod("high-density", 1)) == "dense-1"
    delete_pods(apiserver, "ai-training")

    # The GPUs are unbound from vfio-pci (back on the nvidia driver): not ready for AI training.
    inventory = fleet.inventories["gpu-1"]
    unbound = [replace(g, driver="nvidia", driver_override=None, passthrough_ready=False,
                       passthrough_blockers=["bound to nvidia"]) for g in inventory.gpus]
    fleet("gpu-1", replace(inventory, gpus=unbound))
    assert apiserver.node("gpu-1")["metadata"]["labels"]["nodeagent.io/ready-ai-training"] == "false"
    assert placed(apiserver, launcher_pod("ai-training", 2)) is None

    # The high-density profile is taken off dense-1: its overcommit label goes, and new dense VMs wait.
    fleet("dense-1", profile=None)
    assert "nodeagent.io/overcommit" not in apiserver.node("dense-1")["metadata"]["labels"]
    assert placed(apiserver, launcher_pod("high-density", 2)) is None
    # Already-running VMs stay (IgnoredDuringExecution): the first high-density pod is still bound.
    assert apiserver.admin.get(f"{PODS}/virt-launcher-high-density-1")["spec"]["nodeName"] == "dense-1"


def test_no_pod_is_scheduled_onto_a_node_kubelet_reports_not_ready(fleet: Any, apiserver: ApiServer) -> None:
    """The control: the scheduler's own Ready handling is untouched by nodeagent's labels."""
    apiserver.admin.patch("/api/v1/nodes/dense-1", {"spec": {"taints": [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}})
    with pytest.raises(KubeError):  # nodeagent's own account may not lift a lifecycle taint
        from tests.k8s.test_admission import agent

        agent(apiserver.plane, node="dense-1").patch("/api/v1/nodes/dense-1", {"spec": {"taints": None}})
    assert placed(apiserver, launcher_pod("general", 9)) is None
