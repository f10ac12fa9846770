"""Reboots the fleet can schedule: kured's sentinel file when applied changes need a reboot.

With ``spec.rebootStrategy: kured`` the apply that leaves the node needing a reboot (boot arguments
written or still waiting, 1Gi pages deferred to the boot line) also writes kured's sentinel
(``spec.rebootSentinel``, default ``/var/run/reboot-required``). kured then takes its cluster-wide
lock, drains the node, reboots it and uncordons it, one node at a time. The sentinel lives on tmpfs,
so the reboot itself removes it; the next apply finds the boot arguments booted, writes no new
sentinel, and the ``reboot-required`` label clears. The sentinel is journaled like every file
nodeagent writes: ``revert`` (which also takes back the boot arguments) removes it again.
"""

from __future__ import annotations

from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import FILE
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Subsystem


def sentinel_content(profile_name: str) -> str:
    return f"nodeagent: profile {profile_name} needs a reboot for its boot arguments\n"


def sentinel_change(ctx: PlanContext) -> Change | None:
    """The sentinel write, when the profile asks for kured and the sentinel is not there yet."""
    profile = ctx.profile
    if profile.reboot_strategy != "kured" or ctx.facts.reboot_sentinel is not None:
        return None
    return Change(Subsystem.REBOOT, profile.reboot_sentinel, "absent", "present", Effect.NOW, True, Action.FILE,
                  profile.reboot_sentinel, note="kured drains and reboots this node when the cluster's lock allows",
                  detail={"content": sentinel_content(profile.name)})


def needs_reboot(plan: Plan) -> bool:
    """What the plan already knows needs a reboot (a runtime hugepage shortfall is known only in apply)."""
    return bool(plan.pending_reboot_args) or any(
        c.effect is Effect.REBOOT for c in plan.changes if c.subsystem == Subsystem.BOOTARGS)


def plan_reboot(ctx: PlanContext, plan: Plan) -> None:
    if needs_reboot(plan) and (change := sentinel_change(ctx)) is not None:
        plan.changes.append(change)


SPEC = SubsystemSpec(Subsystem.REBOOT, plan=plan_reboot, handlers={Action.FILE: FILE})
