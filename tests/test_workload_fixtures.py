"""Readiness on every fixture host, against the class table, with expectations computed from the specs.

The sizes the classes ask about are read off ``fixtures/specs/*.yaml`` (the hugepage pools' ``nr``, KSM's
``run``, the kubelet's configuration, the kernel's RT settings, KVM and the IOMMU), not off the code under
test; the CPU's flags, isolation and governor, which GPUs are passthrough-ready and the vGPU instances
come from the inventory (each is checked against the specs in test_fixture_hosts). The class table itself is the
reference recipes' (the README's table), written out here, and judged by this file's own small model: a
default the code got wrong, or a shortfall judged wrongly, fails here. The same model judges an override.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures import hostgen
from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.labels import compute_labels
from nodeagent.workloads import DEFAULT_CLASSES, default_table, parse_workload_classes_text

SPECS = hostgen.spec_names()
SPEC_DIR = Path(hostgen.__file__).resolve().parent / "specs"

ALIGNED = {"cpuManager": "static", "topologyManager": ["single-numa-node", "restricted"], "memoryManager": "Static"}
#: The reference recipes' host half (README "Workload classes"), as requirement mappings.
CONTRACT: dict[str, dict[str, Any]] = {
    "general": {"kvm": True},
    "high-density": {"kvm": True, "ksm": "running"},
    "database": {"kvm": True, "hugepages": [{"size": "1Gi", "count": 64}], "ksm": "stopped",
                 "kubelet": {"cpuManager": "static"}},
    "hpc": {"kvm": True, "hugepages": [{"size": "1Gi", "count": 1}], "cpuFlags": ["avx512f"], "kubelet": ALIGNED},
    "ai-training": {"kvm": True, "iommu": True, "gpus": {"passthrough": 2},
                    "hugepages": [{"size": "2Mi", "amount": "128Gi"}]},
    "vgpu": {"kvm": True, "vgpu": {"instances": 1}},  # a shared GPU: one vGPU instance exists
    "realtime": {"kvm": True, "realtimeKernel": True, "isolatedCpus": {"count": 1, "nohzFull": True, "rcuNocbs": True},
                 "governor": "performance", "realtimeScheduling": True, "hugepages": [{"size": "1Gi", "count": 1}],
                 "cpuFlags": ["tsc_deadline_timer"], "kubelet": ALIGNED},
}
KUBELET_DEFAULTS = {"cpuManager": "none", "topologyManager": "none", "memoryManager": "None"}
KUBELET_KEYS = {"cpuManager": "cpuManagerPolicy", "topologyManager": "topologyManagerPolicy",
                "memoryManager": "memoryManagerPolicy"}
TITLES = {"cpuManager": "CPU manager", "topologyManager": "topology manager", "memoryManager": "memory manager"}


@dataclass(frozen=True)
class Facts:
    kvm: bool
    iommu: bool
    ksm_running: bool
    pages: dict[str, int]  # page size ("1Gi") → pages configured host-wide
    node_pages: dict[str, list[int]]  # per NUMA node
    kubelet: dict[str, str] | None  # manager → policy (defaults filled in); None: no configuration
    realtime: bool
    sched_rt_runtime_us: int
    inv: Inventory  # for the CPU's flags, isolation, governor and the passthrough-ready GPUs


def _size(name: str) -> str:
    return f"{name[:-1]}{name[-1]}i"  # the spec's 2M / 1G are the kernel's binary sizes


def facts_of(spec: dict[str, Any], inv: Inventory) -> Facts:
    pools = (spec.get("memory") or {}).get("hugepages") or {}
    kubelet = spec.get("kubelet")
    managers = None
    if kubelet is not None:
        managers = {m: kubelet.get(key, KUBELET_DEFAULTS[m]) for m, key in KUBELET_KEYS.items()}
    kernel = spec.get("kernel") or {}
    return Facts(
        kvm=spec.get("kvm") is not None,
        iommu=bool((spec.get("iommu") or {}).get("enabled")),
        ksm_running=(spec.get("ksm") or {}).get("run") == 1,
        pages={_size(size): sum(pool.get("nr", [])) for size, pool in pools.items()},
        node_pages={_size(size): list(pool.get("nr", [])) for size, pool in pools.items()},
        kubelet=managers,
        realtime=bool(kernel.get("realtime")),
        sched_rt_runtime_us=int(kernel.get("sched_rt_runtime_us", 950000)),
        inv=inv,
    )


def _pages_needed(entry: dict[str, Any]) -> int:
    if "count" in entry:
        return int(entry["count"])
    units = {"Mi": 2**20, "Gi": 2**30}
    amount = int(entry["amount"][:-2]) * units[entry["amount"][-2:]]
    return -(-amount // (int(entry["size"][:-2]) * units[entry["size"][-2:]]))


def expected_shortfalls(requires: dict[str, Any], facts: Facts) -> list[tuple[str, ...]]:
    """One tuple of fragments per unmet requirement; each must appear together in one reason."""
    out: list[tuple[str, ...]] = []
    cpu = facts.inv.cpu
    if requires.get("kvm") and not facts.kvm:
        out.append(("KVM is not available",))
    if requires.get("iommu") and not facts.iommu:
        out.append(("IOMMU is not enabled",))
    if requires.get("realtimeKernel") and not facts.realtime:
        out.append(("PREEMPT_RT",))
    if "isolatedCpus" in requires and not cpu.isolated:
        out.append(("no isolated CPUs",))
    if "governor" in requires and cpu.governors:
        wanted = set(cpu.isolated) or set(cpu.online)
        if wanted - set(cpu.governors.get(requires["governor"], [])):
            out.append(("governor is not", requires["governor"]))
    if requires.get("realtimeScheduling") and facts.sched_rt_runtime_us != -1:
        out.append(("sched_rt_runtime_us", str(facts.sched_rt_runtime_us)))
    for entry in requires.get("hugepages", []):
        need, size = _pages_needed(entry), entry["size"]
        if entry.get("perNumaNode") == "any":
            best = max(facts.node_pages.get(size, [0]) or [0])
            if best < need:
                out.append((f"needs {need} {size} hugepage", "on one NUMA node", f"has at most {best}"))
        elif facts.pages.get(size, 0) < need:
            out.append((f"needs {need} {size} hugepage", f"has {facts.pages.get(size, 0)}"))
    out += [("CPU lacks", flag) for flag in requires.get("cpuFlags", []) if not cpu.has_flag(flag)]
    if "ksm" in requires and (requires["ksm"] == "running") != facts.ksm_running:
        out.append(("KSM is not running",) if requires["ksm"] == "running" else ("KSM is running",))
    if "gpus" in requires:
        have, need = len(facts.inv.passthrough_gpus), requires["gpus"]["passthrough"]
        if have < need:
            out.append((f"needs {need} passthrough-ready GPU", f"has {have}"))
    if "vgpu" in requires:
        vgpu = facts.inv.vgpu  # instances on GPUs: mediated devices, and vGPU VFs with a type set
        have = sum(len(t.instances) for p in vgpu.mdev_parents if p.gpu for t in p.types)
        have += sum(1 for vf in vgpu.sriov_vfs if vf.current_type)
        if have < requires["vgpu"]["instances"]:
            out.append((f"needs {requires['vgpu']['instances']} vGPU instance", f"has {have}"))
    if "kubelet" in requires and facts.kubelet is not None:
        for manager, wanted in requires["kubelet"].items():
            accepted = wanted if isinstance(wanted, list) else [wanted]
            if facts.kubelet[manager] not in accepted:
                out.append((f"kubelet {TITLES[manager]} is {facts.kubelet[manager]}",))
    return out


def expected_notes(requires: dict[str, Any], facts: Facts) -> bool:
    return "kubelet" in requires and facts.kubelet is None


@pytest.fixture(scope="module")
def hosts(host_trees: Callable[[str], Path]) -> dict[str, Facts]:
    result = {}
    for name in SPECS:
        spec = yaml.safe_load((SPEC_DIR / f"{name}.yaml").read_text())
        result[name] = facts_of(spec, discover(Host(str(host_trees(name)))))
    return result


def _judge(classes: dict[str, dict[str, Any]], facts: Facts, readiness: dict[str, Any]) -> None:
    assert list(readiness) == list(classes)
    for workload, requires in classes.items():
        result = readiness[workload]
        wanted = expected_shortfalls(requires, facts)
        assert len(result.reasons) == len(wanted), (workload, result.reasons, wanted)
        for fragments in wanted:
            assert any(all(f in reason for f in fragments) for reason in result.reasons), (workload, fragments,
                                                                                           result.reasons)
        assert result.ready == (not wanted), workload
        assert bool(result.notes) == expected_notes(requires, facts), (workload, result.notes)


def test_the_default_table_is_the_reference_recipes() -> None:
    assert {name: body["requires"] for name, body in DEFAULT_CLASSES.items()} == CONTRACT
    assert default_table().names == tuple(CONTRACT)


@pytest.mark.parametrize("name", SPECS)
def test_readiness_and_labels_follow_the_class_table(hosts: dict[str, Facts], name: str) -> None:
    facts = hosts[name]
    readiness = default_table().readiness(facts.inv)
    _judge(CONTRACT, facts, readiness)
    labels = compute_labels(facts.inv).labels
    assert {k: v for k, v in labels.items() if k.startswith("nodeagent.io/ready-")} == {
        f"nodeagent.io/ready-{w}": "true" if r.ready else "false" for w, r in readiness.items()}


def test_the_fleet_covers_each_kubelet_case(hosts: dict[str, Facts]) -> None:
    """static (rt-isolated), mixed (intel-2s-8gpu: memory manager None), defaults (db-kubelet-defaults), none."""
    assert hosts["rt-isolated"].kubelet == {"cpuManager": "static", "topologyManager": "single-numa-node",
                                            "memoryManager": "Static"}
    assert hosts["intel-2s-8gpu"].kubelet == {"cpuManager": "static", "topologyManager": "restricted",
                                              "memoryManager": "None"}
    assert hosts["db-kubelet-defaults"].kubelet == KUBELET_DEFAULTS
    assert hosts["amd-nps4-consumer"].kubelet is None
    # the database recipe's host, blocked by the kubelet alone
    only = default_table().readiness(hosts["db-kubelet-defaults"].inv)["database"]
    assert only.reasons == ["kubelet CPU manager is none: dedicated CPUs impossible (needs static)"]


OVERRIDE = """
apiVersion: nodeagent.io/v1alpha1
kind: WorkloadClasses
classes:
  ai-training:
    requires:
      gpus: {passthrough: 4}
      hugepages: [{size: 1Gi, amount: 32Gi, perNumaNode: any}]
  db-small:
    extends: database
    requires:
      hugepages: [{size: 1Gi, count: 16}]
      kubelet: null
  high-density: null
"""


@pytest.mark.parametrize("name", SPECS)
def test_an_override_changes_readiness_and_labels_the_same_way(hosts: dict[str, Facts], name: str) -> None:
    facts = hosts[name]
    table = parse_workload_classes_text(OVERRIDE)
    classes = {k: dict(v) for k, v in CONTRACT.items() if k != "high-density"}
    classes["ai-training"].update(gpus={"passthrough": 4},
                                  hugepages=[{"size": "1Gi", "amount": "32Gi", "perNumaNode": "any"}])
    classes["db-small"] = {k: v for k, v in CONTRACT["database"].items() if k != "kubelet"}
    classes["db-small"]["hugepages"] = [{"size": "1Gi", "count": 16}]
    readiness = table.readiness(facts.inv)
    _judge(classes, facts, readiness)
    labels = compute_labels(facts.inv, workloads=table).labels
    assert "nodeagent.io/ready-high-density" not in labels
    assert labels["nodeagent.io/ready-db-small"] == ("true" if readiness["db-small"].ready else "false")


def test_the_override_matters_on_the_fleet(hosts: dict[str, Facts]) -> None:
    """Not vacuous: the override flips readiness on the hosts where it should."""
    table = parse_workload_classes_text(OVERRIDE)
    # intel: 4 passthrough GPUs and 64 1Gi pages on each node → ready for the overridden ai-training.
    assert table.readiness(hosts["intel-2s-8gpu"].inv)["ai-training"].ready
    assert not default_table().readiness(hosts["intel-2s-8gpu"].inv)["ai-training"].ready
    # rt-isolated: 16 1Gi pages, KSM off: the small database class fits where database does not.
    assert table.readiness(hosts["rt-isolated"].inv)["db-small"].ready
    assert not table.readiness(hosts["rt-isolated"].inv)["database"].ready
