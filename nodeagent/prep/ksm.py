"""KSM: on with its scan parameters (high-density), or off and unmerged (database, realtime).

Turning KSM off writes ``run=2`` first: that unmerges every shared page, so no VM keeps
copy-on-write pages (the side channel and the latency the profile wants gone); ``run=0`` alone
would only stop the scanner. When KubeVirt's virt-handler owns KSM on this node (annotation
``kubevirt.io/ksm-handler-managed``) nodeagent leaves it alone rather than fight over ``run``.
"""

from __future__ import annotations

from nodeagent.discover.ksm import KSM_DIR as KSM
from nodeagent.host import Host
from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import ATTR, Handler, RunState, attr_before, attr_restore
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Skip, Subsystem

KUBEVIRT_KSM_ANNOTATION = "kubevirt.io/ksm-handler-managed"


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
            if value is not None and value != current:
                plan.changes.append(Change(Subsystem.KSM, f"ksm {name}", current, value, Effect.NOW, True,
                                           Action.ATTR, f"{KSM}/{name}"))
        if info.run != 1:
            plan.changes.append(Change(Subsystem.KSM, "ksm run", info.run, 1, Effect.NOW, True, Action.ATTR,
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


#: Stopping is read and restored as the attribute it is; only the write differs.
STOP = Handler(attr_before, _stop_apply, attr_restore)

SPEC = SubsystemSpec(Subsystem.KSM, plan=plan_ksm, handlers={Action.ATTR: ATTR, Action.KSM_STOP: STOP})
