"""spec.kubelet: the kubelet's CPU, topology and memory managers, written where the kubelet reads them.

What the profile asks for becomes a handful of KubeletConfiguration keys (:func:`desired_settings`).
As OpenShift's PerformanceProfile does, a profile that isolates CPUs for VMs (``spec.cpu.isolated``)
implies the static CPU manager with ``reservedSystemCPUs`` = the housekeeping set, unless it says
otherwise (``kubelet: {manage: false}``, or an explicit ``cpuManagerPolicy``). The memory manager's
``reservedMemory`` is derived so that it sums to the kubelet's reservations (kubeReserved +
systemReserved + evictionHard ``memory.available``), the rule the kubelet enforces at start.

Where they are written is decided by :mod:`nodeagent.prep.kubeletconfig` (a drop-in, a minimal edit,
k3s/RKE2 ``kubelet-arg+``); the plan names which and why, and shows current → desired per key.

The kubelet reads its configuration only at start, and a kubelet whose CPU manager policy, reserved
CPUs or memory manager settings changed refuses to start until ``cpu_manager_state`` /
``memory_manager_state`` are removed. Those are removed only while kubelet is stopped (the boot unit
runs before it): while it runs, apply records the step (:data:`~nodeagent.owned.KUBELET_STATE_PENDING_PATH`)
and reports kubelet-restart-required; the boot unit, or the next apply while kubelet is stopped,
performs it. Their content is journaled, so ``revert`` puts them back exactly (while kubelet is stopped).

Interlocks (``--force`` overrides): reserved CPUs that are isolated; with the ``single-numa-node``
topology policy, a NUMA node without a reserved CPU; the memory manager ``Static`` with
``reservedMemory`` that does not sum to the kubelet's reservations.
"""

from __future__ import annotations

from typing import Any

from nodeagent.discover.kubelet import KUBELET_COMMS
from nodeagent.discover.process import find_process
from nodeagent.host import Host
from nodeagent.owned import KUBELET_STATE_PENDING_PATH
from nodeagent.parse import format_cpulist, parse_cpulist
from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import FILE, Handler, RunState, file_before, put_file
from nodeagent.prep.kubeletconfig import (
    CPU_STATE,
    MEMORY_STATE,
    KubeletFacts,
    edit_config,
    format_quantity,
    pending_content,
    quantity_bytes,
    render_dropin,
    render_rancher_args,
)
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Skip, Subsystem

#: The kubelet's defaults for the keys nodeagent sets (what an absent key means).
DEFAULTS: dict[str, Any] = {"cpuManagerPolicy": "none", "topologyManagerPolicy": "none",
                            "topologyManagerScope": "container", "memoryManagerPolicy": "None"}
DEFAULT_EVICTION_MEMORY = "100Mi"  # the kubelet's evictionHard memory.available when unset
#: Which state file a changed key makes stale.
STATE_KEYS = {"cpuManagerPolicy": CPU_STATE, "reservedSystemCPUs": CPU_STATE,
              "memoryManagerPolicy": MEMORY_STATE, "reservedMemory": MEMORY_STATE}


# --- what the profile asks for -------------------------------------------------------------------------


def desired_settings(ctx: PlanContext) -> dict[str, Any] | None:
    """The KubeletConfiguration keys the profile asks for, in the kubelet's spelling (None: none)."""
    spec, cpu = ctx.profile.kubelet, ctx.profile.cpu
    if spec is not None and not spec.manage:
        return None
    isolated = bool(cpu is not None and cpu.isolated)
    if spec is None and not isolated:
        return None
    settings: dict[str, Any] = {}
    policy = spec.cpu_manager_policy if spec is not None else None
    if policy is None and isolated:
        policy = "static"  # what isolating CPUs for VMs is for (KubeVirt's dedicated CPUs)
    if policy is not None:
        settings["cpuManagerPolicy"] = policy
    if spec is not None and spec.cpu_manager_policy_options:
        settings["cpuManagerPolicyOptions"] = dict(spec.cpu_manager_policy_options)
    reserved = _reserved_cpus(ctx, policy)
    if reserved:
        settings["reservedSystemCPUs"] = format_cpulist(reserved)
    if spec is not None:
        for key, value in (("topologyManagerPolicy", spec.topology_manager_policy),
                           ("topologyManagerScope", spec.topology_manager_scope),
                           ("memoryManagerPolicy", spec.memory_manager_policy)):
            if value is not None:
                settings[key] = value
    return settings


def _reserved_cpus(ctx: PlanContext, policy: str | None) -> list[int] | None:
    spec, cpu = ctx.profile.kubelet, ctx.profile.cpu
    if spec is not None and spec.reserved_system_cpus:
        return spec.reserved_system_cpus
    if cpu is not None and cpu.reserved:
        return cpu.reserved
    if policy == "static" and cpu is not None and cpu.isolated:
        return sorted(set(ctx.inventory.cpu.online) - set(cpu.isolated)) or None
    return None


def kubelet_reservation(effective: dict[str, Any], memory_total: int | None) -> tuple[int | None, str]:
    """kubeReserved + systemReserved + evictionHard memory.available, in bytes, with how it was summed."""
    parts: list[str] = []
    total = 0
    for key in ("kubeReserved", "systemReserved"):
        section = effective.get(key)
        value = section.get("memory") if isinstance(section, dict) else None
        if value is not None:
            size = quantity_bytes(value)
            if size is None:
                return None, f"{key}.memory {value!r} is not a quantity"
            total += size
            parts.append(f"{key} {value}")
    eviction = effective.get("evictionHard")
    threshold = eviction.get("memory.available") if isinstance(eviction, dict) else None
    threshold = DEFAULT_EVICTION_MEMORY if threshold is None else str(threshold)
    if threshold.endswith("%"):
        try:
            percent = float(threshold[:-1])
        except ValueError:
            return None, f"evictionHard memory.available {threshold!r} is not a quantity"
        if not memory_total:
            return None, "evictionHard memory.available is a percentage and the node's memory is unknown"
        total += int(memory_total * percent / 100)
    else:
        size = quantity_bytes(threshold)
        if size is None:
            return None, f"evictionHard memory.available {threshold!r} is not a quantity"
        total += size
    parts.append(f"evictionHard memory.available {threshold}")
    return total, " + ".join(parts)


def reserved_memory(ctx: PlanContext, reservation: int, reserved_cpus: list[int]) -> list[dict[str, Any]]:
    """spec.kubelet.reservedMemory, or the whole reservation on the first NUMA node with a reserved CPU
    (where the system daemons the reservation is for run); other resources of an entry are kept."""
    spec = ctx.profile.kubelet
    if spec is not None and spec.reserved_memory:
        wanted = [(r.numa_node, r.memory_bytes) for r in spec.reserved_memory]
    else:
        nodes = [n.id for n in ctx.inventory.numa if set(n.cpus) & set(reserved_cpus)] or \
            [n.id for n in ctx.inventory.numa] or [0]
        wanted = [(min(nodes), reservation)]
    existing = {e.get("numaNode"): e.get("limits") for e in _current_reserved_memory(ctx) if isinstance(e, dict)}
    entries = []
    for node, size in sorted(wanted):
        limits = dict(existing.get(node) or {}) if isinstance(existing.get(node), dict) else {}
        limits["memory"] = format_quantity(size)
        entries.append({"numaNode": node, "limits": limits})
    return entries


def _current_reserved_memory(ctx: PlanContext) -> list[Any]:
    facts = ctx.facts.kubelet
    value = facts.effective.get("reservedMemory") if facts is not None else None
    return value if isinstance(value, list) else []


# --- planning -----------------------------------------------------------------------------------------


def plan_kubelet(ctx: PlanContext, plan: Plan) -> None:
    settings = desired_settings(ctx)
    facts = ctx.facts.kubelet
    if facts is None:
        return
    if settings is not None and facts.mechanism is None:
        if ctx.profile.kubelet is not None or facts.config_present:
            plan.skipped.append(Skip(Subsystem.KUBELET, "config", facts.why))
        settings = None
    stale: set[str] = set()
    if settings is not None:
        stale = _plan_settings(ctx, plan, facts, settings)
    _plan_state(ctx, plan, facts, stale)


def _plan_settings(ctx: PlanContext, plan: Plan, facts: KubeletFacts, settings: dict[str, Any]) -> set[str]:
    """The config change (one file, every key shown); returns the state files it makes stale.

    Nothing to change, nothing refused: the interlocks judge what nodeagent would write, not a kubelet
    configuration it leaves as it is."""
    effective = facts.effective
    policy = settings.get("cpuManagerPolicy", effective.get("cpuManagerPolicy"))
    reserved = _cpus(settings.get("reservedSystemCPUs", effective.get("reservedSystemCPUs"))) or []
    refusals: list[Refusal] = []
    if settings.get("memoryManagerPolicy") == "Static":
        total, how = kubelet_reservation(effective, facts.memory_total_bytes)
        if total is None:
            refusals.append(Refusal(Subsystem.KUBELET, "reservedMemory", f"cannot derive reservedMemory: {how}"))
        else:
            settings["reservedMemory"] = reserved_memory(ctx, total, reserved)
    rows = [{"key": key, "current": _shown(key, effective.get(key)), "desired": _shown(key, value)}
            for key, value in settings.items() if not _same(key, effective.get(key), value)]
    if not rows and not refusals:
        return set()
    if policy == "static" and not reserved and not _reserves_cpu(effective):
        refusals.append(Refusal(Subsystem.KUBELET, "reservedSystemCPUs",
                                "the static CPU manager needs reserved CPUs and the kubelet reserves none: set "
                                "spec.cpu.reserved or spec.kubelet.reservedSystemCPUs (the kubelet would not start)"))
    if facts.mechanism != "rancher-args":
        refusals += [Refusal(Subsystem.KUBELET, row["key"],
                             f"set by a kubelet flag in {facts.flagged[row['key']]}, which overrides the config "
                             f"file and its drop-ins: remove the flag there (nodeagent then writes {row['key']})")
                     for row in rows if row["key"] in facts.flagged]
    memory_policy = settings.get("memoryManagerPolicy", effective.get("memoryManagerPolicy"))
    refusals += interlocks(ctx, settings, reserved, facts, memory_policy)
    for refusal in refusals:
        (plan.forced if refusal.forceable and ctx.options.force else plan.refusals).append(refusal)
    if not rows:
        return set()
    changed = {row["key"] for row in rows}
    content, note = _content(ctx, facts, settings, changed)
    stopped = kubelet_stopped(ctx)
    plan.changes.append(Change(
        Subsystem.KUBELET, facts.path or "config", "absent" if facts.text is None else "present",
        f"{len(rows)} setting{'s' if len(rows) != 1 else ''}", Effect.NOW if stopped else Effect.KUBELET_RESTART,
        True, Action.KUBELET_FILE, facts.path, note=note,
        detail={"content": content, "settings": rows, "mechanism": facts.mechanism,
                "restore": {"mode": facts.mode}}))
    return {STATE_KEYS[key] for key in changed if key in STATE_KEYS}


def _content(ctx: PlanContext, facts: KubeletFacts, settings: dict[str, Any], changed: set[str]) -> tuple[str, str]:
    if facts.mechanism == "dropin":
        return render_dropin(ctx.profile.name, settings), facts.why
    if facts.mechanism == "rancher-args":
        return render_rancher_args(ctx.profile.name, settings), facts.why
    text, kept = edit_config(facts.text, {k: v for k, v in settings.items() if k in changed})
    return text, facts.why if kept else facts.why + "; the file is rewritten from its keys (its comments are lost)"


def interlocks(ctx: PlanContext, settings: dict[str, Any], reserved: list[int], facts: KubeletFacts,
               memory_policy: Any) -> list[Refusal]:
    """The settings that would leave the node inconsistent (each ``--force`` overrides)."""
    refusals: list[Refusal] = []
    cpu = ctx.profile.cpu
    isolated = set(cpu.isolated) if cpu is not None and cpu.isolated else set(ctx.inventory.cpu.isolated)
    both = sorted(set(reserved) & isolated) if "reservedSystemCPUs" in settings else []
    if both:
        refusals.append(Refusal(Subsystem.KUBELET, "reservedSystemCPUs",
                                f"reserved CPUs {format_cpulist(both)} are isolated: the kubelet's and the system's "
                                "housekeeping would run on CPUs the scheduler keeps idle", forceable=True,
                                detail={"cpus": both}))
    topology = settings.get("topologyManagerPolicy", facts.effective.get("topologyManagerPolicy"))
    if topology == "single-numa-node" and reserved:
        for node in ctx.inventory.numa:
            if node.cpus and not set(node.cpus) & set(reserved):
                refusals.append(Refusal(Subsystem.KUBELET, f"node{node.id}",
                                        f"NUMA node {node.id} has no reserved CPU (reservedSystemCPUs "
                                        f"{format_cpulist(reserved)}) while the topology manager is "
                                        "single-numa-node: pods aligned to it get no housekeeping CPU there",
                                        forceable=True))
    if memory_policy == "Static" and ("reservedMemory" in settings or "memoryManagerPolicy" in settings):
        total, how = kubelet_reservation(facts.effective, facts.memory_total_bytes)
        entries = settings.get("reservedMemory", facts.effective.get("reservedMemory")) or []
        summed = sum(quantity_bytes((e.get("limits") or {}).get("memory")) or 0
                     for e in entries if isinstance(e, dict))
        if total is not None and summed != total:
            refusals.append(Refusal(Subsystem.KUBELET, "reservedMemory",
                                    f"the memory manager Static needs reservedMemory summing to the kubelet's "
                                    f"reservations, {format_quantity(total)} ({how}); it sums to "
                                    f"{format_quantity(summed)} (the kubelet would not start)", forceable=True))
    return refusals


def _plan_state(ctx: PlanContext, plan: Plan, facts: KubeletFacts, stale: set[str]) -> None:
    """The state-file step: now while kubelet is stopped, else recorded for before its next start."""
    wanted = sorted(stale | set(facts.pending or []))
    present = [path for path in wanted if path in facts.state_files]
    if kubelet_stopped(ctx):
        for path in present:
            _, mode = facts.state_files[path]
            plan.changes.append(Change(
                Subsystem.KUBELET, path, "present", "removed", Effect.NOW, True, Action.KUBELET_STATE, path,
                note="the kubelet refuses to start with a state file from other CPU/memory manager settings; "
                     "removed while it is stopped, journaled (revert puts it back)",
                detail={"restore": {"mode": mode}}))
        if facts.pending_text is not None:
            plan.changes.append(Change(
                Subsystem.KUBELET, KUBELET_STATE_PENDING_PATH, "present", "absent", Effect.NOW, True, Action.FILE,
                KUBELET_STATE_PENDING_PATH, note="the pending state-file step is done", detail={"content": None}))
        return
    if not present:
        return
    content = pending_content(ctx.profile.name, present)
    if facts.pending_text == content:
        plan.notes.append("pending: the kubelet's state files " + ", ".join(present) + " are removed before "
                          "kubelet next starts (nodeagent-prep.service, or `nodeagent apply` while it is stopped)")
        return
    plan.changes.append(Change(
        Subsystem.KUBELET, "state files", ", ".join(present), "removed before kubelet starts", Effect.KUBELET_RESTART,
        True, Action.FILE, KUBELET_STATE_PENDING_PATH,
        note="kubelet is running: never removed under it. Drain the node; nodeagent-prep.service removes them at "
             "boot before kubelet, or stop kubelet and run `nodeagent apply` again",
        detail={"content": content}))


def kubelet_stopped(ctx: PlanContext) -> bool:
    """Kubelet is known not to run: no such process, or the boot unit (ordered before kubelet) without a
    process table to ask."""
    running = ctx.inventory.kubelet.running
    return running is False or (running is None and ctx.options.boot)


def _reserves_cpu(effective: dict[str, Any]) -> bool:
    for key in ("kubeReserved", "systemReserved"):
        section = effective.get(key)
        if isinstance(section, dict) and section.get("cpu") not in (None, "0", 0):
            return True
    return False


def _cpus(value: Any) -> list[int] | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return parse_cpulist(str(value))
    except ValueError:
        return None


def _same(key: str, current: Any, desired: Any) -> bool:
    if current is None:
        current = DEFAULTS.get(key)
    if key == "reservedSystemCPUs":
        return _cpus(current) == _cpus(desired)
    if key == "cpuManagerPolicyOptions":
        return isinstance(current, dict) and {k: str(v).lower() for k, v in current.items()} == desired
    if key == "reservedMemory":
        return _memory_entries(current) == _memory_entries(desired)
    return current == desired


def _memory_entries(value: Any) -> list[tuple[Any, tuple[tuple[str, int | None], ...]]] | None:
    if not isinstance(value, list):
        return None
    entries = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("limits"), dict):
            return None
        limits = tuple(sorted((str(k), quantity_bytes(v)) for k, v in entry["limits"].items()))
        entries.append((entry.get("numaNode"), limits))
    return sorted(entries, key=repr)


def _shown(key: str, value: Any) -> str:
    if value is None:
        default = DEFAULTS.get(key)
        return f"(unset: {default})" if default is not None else "(unset)"
    if key == "cpuManagerPolicyOptions" and isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if key == "reservedMemory" and isinstance(value, list):
        return "; ".join(f"node{e.get('numaNode')} " + ",".join(f"{k}={v}" for k, v in (e.get("limits") or {}).items())
                         for e in value if isinstance(e, dict)) or "(none)"
    return str(value)


# --- handlers ------------------------------------------------------------------------------------------


def _mode(detail: dict[str, Any], default: int = 0o644) -> int:
    restore = detail.get("restore")
    mode = restore.get("mode") if isinstance(restore, dict) else None
    return mode if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o7777 else default


def config_apply(host: Host, change: Change, state: RunState) -> None:
    assert change.path is not None
    put_file(host, change.path, change.detail.get("content"), _mode(change.detail))


def config_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if host.read_text(path) != old:
        put_file(host, path, old, _mode(detail))


def _refuse_if_running(host: Host, what: str) -> None:
    if host.dry_run:
        return
    running, _ = find_process(host, KUBELET_COMMS)
    if running:
        raise RuntimeError(f"kubelet is running: {what} only while it is stopped (drain the node, "
                           "`systemctl stop kubelet`, run nodeagent again, start kubelet)")


def state_apply(host: Host, change: Change, state: RunState) -> None:
    assert change.path is not None
    _refuse_if_running(host, f"{change.path} is removed")
    put_file(host, change.path, None, 0)


def state_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if old is None or host.read_text(path) == old:
        return
    _refuse_if_running(host, f"{path} is put back")
    put_file(host, path, old, _mode(detail))


KUBELET_FILE = Handler(file_before, config_apply, config_restore)
KUBELET_STATE = Handler(file_before, state_apply, state_restore)

SPEC = SubsystemSpec(Subsystem.KUBELET, plan=plan_kubelet,
                     handlers={Action.KUBELET_FILE: KUBELET_FILE, Action.KUBELET_STATE: KUBELET_STATE,
                               Action.FILE: FILE})
