"""Planning: Profile + Inventory (+ prep's facts, the Node's annotations) → :class:`Plan`.

This is the one code path behind ``plan``, ``apply --dry-run`` and ``apply``: each of them calls
:func:`build_plan`; only ``apply`` then executes the changes (``--dry-run`` through a Host that
records instead of writing). Planning itself never writes.

Order matters and is fixed here: memory first (hugepages, shrinking before growing), then KSM,
the governor, the GPU bindings (module load before binds), the persistence files, and the boot
arguments last (a hugepage request that falls short at apply time joins them).
"""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.owned import PROFILE_PATH
from nodeagent.prep.bootargs import plan_bootargs
from nodeagent.prep.context import PlanContext
from nodeagent.prep.facts import gather
from nodeagent.prep.governor import plan_governor
from nodeagent.prep.hugepages import plan_hugepages
from nodeagent.prep.ksm import plan_ksm
from nodeagent.prep.model import Change, Effect, Plan, PrepOptions
from nodeagent.prep.vfio import plan_vfio
from nodeagent.profile import NodeProfile


def build_plan(ctx: PlanContext) -> Plan:
    """Every change, refusal and skip for this profile on this node. Pure: reads nothing."""
    plan = Plan(profile=ctx.profile.name)
    plan_hugepages(ctx, plan)
    plan_ksm(ctx, plan)
    plan_governor(ctx, plan)
    plan_vfio(ctx, plan)
    _plan_profile_install(ctx, plan)
    plan_bootargs(ctx, plan)
    plan.kubelet_restart_pending = ctx.inventory.prep.kubelet_restart_required
    return plan


def plan_for_host(host: Host, inventory: Inventory, profile: NodeProfile, *, options: PrepOptions | None = None,
                  annotations: dict[str, str] | None = None, annotations_error: str | None = None) -> PlanContext:
    """Gather prep's facts through ``host`` and return the context to plan (and apply) with."""
    facts = gather(host, inventory, profile)
    return PlanContext(profile, inventory, facts, options or PrepOptions(), annotations, annotations_error)


def _plan_profile_install(ctx: PlanContext, plan: Plan) -> None:
    """The boot unit re-applies ``/etc/nodeagent/profile.yaml`` before kubelet: that is how the
    runtime settings (2Mi pages, KSM, governor, vfio bindings) survive a reboot."""
    text = ctx.profile.source_text
    if ctx.options.boot or text is None or text == ctx.facts.installed_profile:
        return
    if ctx.options.profile_path and _same_file(ctx.options.profile_path, ctx.inventory.root):
        return
    plan.changes.append(Change(
        "persist", PROFILE_PATH, "absent" if ctx.facts.installed_profile is None else "another profile",
        f"profile {ctx.profile.name}", Effect.NOW, True, "file", PROFILE_PATH,
        note="nodeagent-prep.service re-applies it at boot, before kubelet", detail={"content": text},
    ))


def _same_file(path: str, root: str) -> bool:
    import os

    try:
        return os.path.samefile(path, os.path.join(root, PROFILE_PATH.lstrip("/")))
    except OSError:
        return False
