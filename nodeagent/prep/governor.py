"""CPU frequency governor, per cpufreq policy, on the isolated CPUs (or all CPUs).

Governors are set per policy, not per CPU: a policy may cover several CPUs (a whole package on
some AMD and ARM systems), so setting it for one isolated CPU also sets it for its siblings in
the policy. The plan says so when it happens. Without cpufreq (VMs, some BIOS settings) there is
nothing to set and the request is skipped with the reason.
"""

from __future__ import annotations

from nodeagent.parse import format_cpulist
from nodeagent.prep.context import PlanContext
from nodeagent.prep.facts import CPUFREQ
from nodeagent.prep.handlers import ATTR
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Skip, Subsystem


def plan_governor(ctx: PlanContext, plan: Plan) -> None:
    cpu = ctx.profile.cpu
    if cpu is None or not cpu.governor:
        return
    wanted = cpu.governor
    if not ctx.facts.cpufreq_present:
        plan.skipped.append(Skip(Subsystem.GOVERNOR, wanted, f"no cpufreq on this host ({CPUFREQ} has no "
                                                         "policies): the CPUs run at the firmware's frequency"))
        return
    targets = set(cpu.isolated or ctx.inventory.cpu.online)
    scope = "the isolated CPUs" if cpu.isolated else "all CPUs"
    for policy in ctx.facts.policies:
        covered = targets & set(policy.cpus)
        if not covered:
            continue
        target = f"{policy.name} (CPUs {format_cpulist(policy.cpus)})"
        if policy.available and wanted not in policy.available:
            plan.refusals.append(Refusal(Subsystem.GOVERNOR, target,
                                         f"governor {wanted!r} is not offered for these CPUs "
                                         f"(available: {', '.join(policy.available)})",
                                         detail={"cpus": list(policy.cpus)}))
            continue
        if policy.governor is None:
            plan.refusals.append(Refusal(Subsystem.GOVERNOR, policy.name,
                                         f"{policy.path}/scaling_governor: the current governor cannot be read; "
                                         "nodeagent never changes a value it cannot read back and restore"))
            continue
        if policy.governor == wanted:
            continue
        extra = sorted(set(policy.cpus) - targets)
        note = f"for {scope}"
        if extra:
            note += f"; the policy also covers CPUs {format_cpulist(extra)}, which change with them"
        plan.changes.append(Change(Subsystem.GOVERNOR, target, policy.governor, wanted, Effect.NOW, True,
                                   Action.ATTR, f"{policy.path}/scaling_governor", note=note,
                                   detail={"cpus": list(policy.cpus)}))


SPEC = SubsystemSpec(Subsystem.GOVERNOR, plan=plan_governor, handlers={Action.ATTR: ATTR})
