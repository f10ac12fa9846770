"""Realtime scheduling: ``kernel.sched_rt_runtime_us=-1``, now and persisted, for KubeVirt's realtime VMs.

KubeVirt's virt-handler labels a node ``kubevirt.io/realtime`` from the host's RT scheduling
settings, and KubeVirt adds that label to the node selector of every VM with a realtime vCPU
policy. With the kernel's default RT throttling (950000 µs of every 1 s) a realtime vCPU thread is
stopped for 50 ms a second, so the node must run RT tasks unthrottled: ``sched_rt_runtime_us=-1``.

``spec.kernel.realtimeScheduling: true`` plans two journaled, revertible changes:

* the running value, written to ``/proc/sys/kernel/sched_rt_runtime_us`` and read back;
* ``/etc/sysctl.d/90-nodeagent-realtime.conf``, so systemd-sysctl sets it again at boot.

``revert`` restores the old value and removes (or restores) the drop-in.
"""

from __future__ import annotations

from nodeagent.prep.context import PlanContext
from nodeagent.prep.facts import SCHED_RT_RUNTIME, SYSCTL_DROPIN
from nodeagent.prep.handlers import ATTR, FILE
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Subsystem

__all__ = ["SCHED_RT_RUNTIME", "SPEC", "SYSCTL_DROPIN", "dropin_content", "plan_rtsched"]

UNTHROTTLED = -1


def dropin_content(profile_name: str) -> str:
    return (f"# Written by nodeagent (profile {profile_name}): realtime tasks unthrottled, which\n"
            "# KubeVirt's kubevirt.io/realtime node label needs. Removed by `nodeagent prep revert`.\n"
            f"kernel.sched_rt_runtime_us = {UNTHROTTLED}\n")


def plan_rtsched(ctx: PlanContext, plan: Plan) -> None:
    kernel = ctx.profile.kernel
    if kernel is None or not kernel.realtime_scheduling:
        return
    current = ctx.facts.sched_rt_runtime_us
    if current is None:
        plan.refusals.append(Refusal(Subsystem.REALTIME, "kernel.sched_rt_runtime_us",
                                     f"{SCHED_RT_RUNTIME}: not present or not readable; nodeagent never changes a "
                                     "value it cannot read back and restore"))
        return
    if current != UNTHROTTLED:
        plan.changes.append(Change(Subsystem.REALTIME, "kernel.sched_rt_runtime_us", current, UNTHROTTLED,
                                   Effect.NOW, True, Action.ATTR, SCHED_RT_RUNTIME,
                                   note="realtime tasks unthrottled (KubeVirt's kubevirt.io/realtime label)"))
    content = dropin_content(ctx.profile.name)
    if ctx.facts.sysctl_dropin != content:
        plan.changes.append(Change(Subsystem.REALTIME, SYSCTL_DROPIN,
                                   "absent" if ctx.facts.sysctl_dropin is None else "differs", "present",
                                   Effect.NOW, True, Action.FILE, SYSCTL_DROPIN,
                                   note="kernel.sched_rt_runtime_us = -1 again at boot (systemd-sysctl)",
                                   detail={"content": content}))


SPEC = SubsystemSpec(Subsystem.REALTIME, plan=plan_rtsched, handlers={Action.ATTR: ATTR, Action.FILE: FILE})
