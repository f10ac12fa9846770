"""KSM: on with its scan parameters (high-density), or off and unmerged (database, realtime).

Turning KSM off writes ``run=2`` first: that unmerges every shared page, so no VM keeps
copy-on-write pages (the side channel and the latency the profile wants gone); ``run=0`` alone
would only stop the scanner (Documentation/admin-guide/mm/ksm.rst: 0 "stop ksmd from running but
keep merged pages", 2 "stop ksmd and unmerge all pages currently merged"). Reverting an enable
(``run`` back to 0) therefore unmerges too: the pages nodeagent's scanner merged were not shared
before it, and ``run=0`` would leave them shared. When KubeVirt's virt-handler owns KSM on this node (annotation
``kubevirt.io/ksm-handler-managed``, or the label ``kubevirt.io/ksm-enabled=true`` virt-handler sets when it
turned KSM on) nodeagent leaves it alone rather than fight over ``run``.
"""

from __future__ import annotations

from typing import Any

from nodeagent.discover.ksm import KSM_DIR as KSM
from nodeagent.host import Host
from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import ATTR, Handler, RunState, attr_apply, attr_before, attr_restore
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Skip, Subsystem

KUBEVIRT_KSM_ANNOTATION = "kubevirt.io/ksm-handler-managed"
KUBEVIRT_KSM_ENABLED_LABEL = "kubevirt.io/ksm-enabled"  # a Node label; node_annotations() passes it along


def plan_ksm(ctx: PlanContext, plan: Plan) -> None:
    spec = ctx.profile.ksm
    if spec is None:
        return
    info = ctx.inventory.ksm
    if ctx.annotations_error is not None:
        plan.skipped.append(Skip(Subsystem.KSM, "ksm", "could not read the Node's annotations to learn whether "
                                               f"KubeVirt manages KSM ({ctx.annotations_error}); left alone"))
        return
    managed = (ctx.annotations or {}).get(KUBEVIRT_KSM_ANNOTATION)
    if managed is not None and managed.strip().lower() != "false":
        plan.skipped.append(Skip(Subsystem.KSM, "ksm", f"the Node carries {KUBEVIRT_KSM_ANNOTATION}={managed!r}: "
                                               "KubeVirt's virt-handler owns KSM here; left alone"))
        return
    enabled_by_kubevirt = (ctx.annotations or {}).get(KUBEVIRT_KSM_ENABLED_LABEL)
    if enabled_by_kubevirt is not None and enabled_by_kubevirt.strip().lower() == "true":
        plan.skipped.append(Skip(Subsystem.KSM, "ksm", f"the Node carries {KUBEVIRT_KSM_ENABLED_LABEL}=true: "
                                               "KubeVirt's virt-handler turned KSM on here; left alone"))
        return
    if info.available and info.run is None:
        plan.refusals.append(Refusal(Subsystem.KSM, "ksm", f"{KSM}/run: the current value cannot be read "
                                                   "(unreadable, or not a number); nodeagent never changes a "
                                                   "value it cannot read back and restore"))
        return
    if not info.available or info.run is None:
        if spec.enabled:
            plan.refusals.append(Refusal(Subsystem.KSM, "ksm", f"this kernel has no KSM ({KSM} is absent); "
                                                       "cannot enable it"))
        else:
            plan.skipped.append(Skip(Subsystem.KSM, "ksm", f"this kernel has no KSM ({KSM} is absent): already off"))
        return
    if spec.enabled:
        for name, value, current in (("pages_to_scan", spec.pages_to_scan, info.pages_to_scan),
                                     ("sleep_millisecs", spec.sleep_millisecs, info.sleep_millisecs)):
            if value is not None and current is None:
                plan.refusals.append(Refusal(Subsystem.KSM, f"ksm {name}", f"{KSM}/{name}: the current value "
                                                                       "cannot be read; never changed"))
            elif value is not None and value != current:
                plan.changes.append(Change(Subsystem.KSM, f"ksm {name}", current, value, Effect.NOW, True,
                                           Action.ATTR, f"{KSM}/{name}"))
        if info.run != 1:
            plan.changes.append(Change(Subsystem.KSM, "ksm run", info.run, 1, Effect.NOW, True, Action.KSM_RUN,
                                       f"{KSM}/run", note="start merging identical pages"))
    elif info.run != 0:
        shared = info.pages_sharing or 0
        plan.changes.append(Change(Subsystem.KSM, "ksm run", info.run, 0, Effect.NOW, True, Action.KSM_STOP,
                                   f"{KSM}/run", note=f"run=2 unmerges {shared} shared pages first, then run=0"))


def stop(host: Host, path: str) -> None:
    """``run=2`` (unmerge everything, synchronously), then ``run=0``; verified."""
    host.write(path, "2")
    host.write(path, "0")
    if host.dry_run:
        return
    value = host.read_int(path)
    if value != 0:
        raise RuntimeError(f"{path}: wrote 0 but the kernel reports {value}")


def _stop_apply(host: Host, change: Change, state: RunState) -> None:
    assert change.path is not None
    stop(host, change.path)


def restore_run(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    """``run`` back to ``old``; back to stopped (0) unmerges first, as stopping on apply does."""
    assert path is not None
    if str(old).strip() == "0" and host.read_str(path) not in ("0", None):
        stop(host, path)
        return
    attr_restore(host, path, target, old, detail)


#: Starting and stopping are read as the attribute ``run`` is; stopping writes 2 then 0, and so
#: does restoring ``run=0``.
STOP = Handler(attr_before, _stop_apply, restore_run)
RUN = Handler(attr_before, attr_apply, restore_run)

SPEC = SubsystemSpec(Subsystem.KSM, plan=plan_ksm,
                     handlers={Action.ATTR: ATTR, Action.KSM_STOP: STOP, Action.KSM_RUN: RUN})
