"""Planning: Profile + Inventory (+ prep's facts, the Node's annotations) → :class:`Plan`.

This is the one code path behind ``plan``, ``apply --dry-run`` and ``apply``: each of them calls
:func:`build_plan`; only ``apply`` then executes the changes (``--dry-run`` through a Host that
records instead of writing). Planning itself never writes.

The order is fixed by the registry (:mod:`nodeagent.prep.subsystems`): each subsystem plans its
own changes, the boot arguments come last.
"""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.prep.context import PlanContext
from nodeagent.prep.facts import gather
from nodeagent.prep.model import Plan, PrepOptions, Refusal
from nodeagent.prep.subsystems import SUBSYSTEMS
from nodeagent.profile import NodeProfile


def build_plan(ctx: PlanContext) -> Plan:
    """Every change, refusal and skip for this profile on this node. Pure: reads nothing."""
    plan = Plan(profile=ctx.profile.name)
    for subsystem in SUBSYSTEMS.values():
        if subsystem.plan is not None:
            subsystem.plan(ctx, plan)
    _refuse_unreadable(ctx, plan)
    plan.kubelet_restart_pending = ctx.inventory.prep.kubelet_restart_required
    return plan


def _refuse_unreadable(ctx: PlanContext, plan: Plan) -> None:
    """A change to a file whose current content cannot be read is refused: it could not be journaled."""
    for change in [c for c in plan.changes if c.path in ctx.facts.unreadable]:
        plan.changes.remove(change)
        plan.refusals.append(Refusal(change.subsystem, change.target,
                                     f"{change.path}: {ctx.facts.unreadable[change.path]}; nodeagent never "
                                     "changes a file it cannot read back and restore"))


def plan_for_host(host: Host, inventory: Inventory, profile: NodeProfile, *, options: PrepOptions | None = None,
                  annotations: dict[str, str] | None = None, annotations_error: str | None = None) -> PlanContext:
    """Gather prep's facts through ``host`` and return the context to plan (and apply) with."""
    facts = gather(host, inventory, profile)
    return PlanContext(profile, inventory, facts, options or PrepOptions(), annotations, annotations_error)
