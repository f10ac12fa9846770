"""The ``kubelet`` requirement: the CPU, topology and memory manager policies a class's VMs need.

KubeVirt places a VM with ``dedicatedCpuPlacement`` only on nodes whose kubelet runs the static CPU manager,
and a guest's NUMA layout is real only when the topology manager (``single-numa-node`` or ``restricted``)
and the memory manager (``Static``) align its CPUs, memory and hugepages. Where the kubelet's configuration
exists, a key it does not set has the kubelet's default (:data:`KUBELET_DEFAULTS`). Where no configuration is
found (a host prepared before it joins a cluster) or it cannot be read, the policies are unknown: that is a
note, never a shortfall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodeagent.inventory import Inventory, KubeletInfo
from nodeagent.workloads.model import RequirementError, RequirementKind, require_mapping, shown


@dataclass(frozen=True)
class Manager:
    key: str  # the requirement's key
    config_key: str  # the KubeletConfiguration field
    title: str  # as messages name it
    default: str  # the kubelet's default when the field is absent
    policies: tuple[str, ...]  # the kubelet's accepted values
    purpose: str  # what the wanted policy gives VMs (why a shortfall matters)


MANAGERS = (
    Manager("cpuManager", "cpuManagerPolicy", "CPU manager", "none", ("none", "static"),
            "dedicated CPUs impossible"),
    Manager("topologyManager", "topologyManagerPolicy", "topology manager", "none",
            ("none", "best-effort", "restricted", "single-numa-node"),
            "CPUs, memory and devices not aligned on a NUMA node"),
    Manager("memoryManager", "memoryManagerPolicy", "memory manager", "None", ("None", "Static"),
            "guaranteed memory and hugepages not NUMA-local"),
)
BY_KEY = {m.key: m for m in MANAGERS}
KUBELET_DEFAULTS = {m.config_key: m.default for m in MANAGERS}
FORM = ("a mapping of cpuManager, topologyManager, memoryManager to a policy or a list of policies, "
        "such as {cpuManager: static, topologyManager: [single-numa-node, restricted]}")


def policy(kubelet: KubeletInfo, manager: Manager) -> str | None:
    """The policy the kubelet runs, its default where the config does not set it; None: not known."""
    if not kubelet.config_present or not kubelet.config_readable:
        return None
    value = {"cpuManager": kubelet.cpu_manager_policy, "topologyManager": kubelet.topology_manager_policy,
             "memoryManager": kubelet.memory_manager_policy}[manager.key]
    return manager.default if value is None else value


def unknown_reason(kubelet: KubeletInfo) -> str | None:
    """Why the managers' policies are not known (None: they are)."""
    if not kubelet.config_present:
        return "no kubelet configuration found"
    if not kubelet.config_readable:
        return f"the kubelet configuration ({kubelet.config_path}) is not readable by this user"
    return None


def parse_kubelet(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``{manager key: accepted policies}``, as pairs in the managers' order."""
    require_mapping(value, BY_KEY, FORM)
    wanted = []
    for manager in MANAGERS:
        if manager.key not in value:
            continue
        raw = value[manager.key]
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise RequirementError(f"an empty list is not a policy (one of {', '.join(manager.policies)})",
                                   f".{manager.key}")
        for item in items:
            if item not in manager.policies:
                raise RequirementError(f"{shown(item)} is not a {manager.title} policy "
                                       f"(one of {', '.join(manager.policies)}, as the kubelet spells it)",
                                       f".{manager.key}")
        wanted.append((manager.key, tuple(dict.fromkeys(items))))
    return tuple(wanted)


def _either(policies: tuple[str, ...]) -> str:
    return " or ".join(policies)


def kubelet_shortfalls(inv: Inventory, wanted: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str]:
    reasons = []
    for key, policies in wanted:
        manager = BY_KEY[key]
        have = policy(inv.kubelet, manager)
        if have is None or have in policies:
            continue
        reasons.append(f"kubelet {manager.title} is {have}: {manager.purpose} (needs {_either(policies)})")
    return reasons


def kubelet_notes(inv: Inventory, wanted: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str]:
    why = unknown_reason(inv.kubelet)
    if why is None:
        return []
    needs = ", ".join(f"{BY_KEY[key].title} {_either(policies)}" for key, policies in wanted)
    return [f"kubelet managers unknown ({why}): not judged; the class needs {needs}"]


def describe_kubelet(wanted: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    return "kubelet " + ", ".join(f"{BY_KEY[key].title} `{'` or `'.join(policies)}`" for key, policies in wanted)


KUBELET = RequirementKind("kubelet", FORM, parse_kubelet, kubelet_shortfalls, describe_kubelet, kubelet_notes)
