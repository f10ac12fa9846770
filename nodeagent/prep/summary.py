"""Text for people: the plan as a diff, the apply and revert results.

Identical changes (or refusals) that differ only in the CPUs they concern print as one line with
the CPU list (``cpu-governor CPUs 0-223: powersave -> performance``): a 224-CPU host has one
cpufreq policy per CPU. The JSON output keeps one entry per change.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nodeagent.parse import format_cpulist
from nodeagent.prep.apply import ApplyResult, Outcome, RevertResult
from nodeagent.prep.model import Change, Effect, Plan, Refusal, label

T = TypeVar("T")

_WHEN = {Effect.NOW: "now", Effect.KUBELET_RESTART: "after kubelet restart", Effect.REBOOT: "after reboot"}


def value(item: Any) -> str:
    if item is None:
        return "(none)"
    if isinstance(item, list):
        return " ".join(str(i) for i in item) or "(none)"
    return str(item)


@dataclass
class Group(Generic[T]):
    """Items identical but for their CPUs: the first one stands for all, ``cpus`` is their union."""

    first: T
    cpus: set[int]
    count: int = 1

    def label(self, subsystem: str, target: str) -> str:
        return f"{subsystem} CPUs {format_cpulist(sorted(self.cpus))}" if self.count > 1 else label(subsystem, target)


def group_by_cpus(items: Iterable[T], detail: Callable[[T], dict[str, Any]],
                  key: Callable[[T], Hashable]) -> list[Group[T]]:
    """Merge the items with equal ``key`` whose detail names ``cpus``, at the first one's place."""
    groups: list[Group[T]] = []
    index: dict[Hashable, Group[T]] = {}
    for item in items:
        cpus = detail(item).get("cpus")
        if not isinstance(cpus, list):
            groups.append(Group(item, set()))
            continue
        group = index.get(key(item))
        if group is None:
            group = index[key(item)] = Group(item, set())
            groups.append(group)
        else:
            group.count += 1
        group.cpus.update(cpus)
    return groups


def _change_key(change: Change) -> Hashable:
    return (change.subsystem, change.action, repr(change.current), repr(change.desired), change.effect,
            change.reversible, change.note)


def _settings(change: Change) -> list[dict[str, str]]:
    """The per-key rows of a change that writes several settings into one file (the kubelet's)."""
    rows = change.detail.get("settings")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _refusal_key(refusal: Refusal) -> Hashable:
    return refusal.subsystem, refusal.reason, refusal.forceable


def _refusal_lines(refusals: list[Refusal], *, hint: bool) -> list[str]:
    lines = []
    for group in group_by_cpus(refusals, lambda r: r.detail, _refusal_key):
        refusal = group.first
        flag = "  (--force overrides)" if hint and refusal.forceable else ""
        lines.append(f"  ! {group.label(refusal.subsystem, refusal.target)}: {refusal.reason}{flag}")
    return lines


def plan_text(plan: Plan) -> str:
    lines: list[str] = []
    count = len(plan.changes)
    if count:
        lines.append(f"profile {plan.profile}: {count} change{'s' if count != 1 else ''}")
    elif not plan.refusals:
        lines.append(f"profile {plan.profile}: nothing to change, the node is converged")
    else:
        lines.append(f"profile {plan.profile}: nothing can change until the refusals are resolved")
    for group in group_by_cpus(plan.changes, lambda c: c.detail, _change_key):
        change = group.first
        flag = "" if change.reversible else "  (not reversible)"
        lines.append(f"  ~ {group.label(change.subsystem, change.target)}: {value(change.current)} -> "
                     f"{value(change.desired)}  [{_WHEN[change.effect]}]{flag}")
        if change.note:
            lines.append(f"      {change.note}")
        lines += [f"      {row['key']}: {row['current']} -> {row['desired']}" for row in _settings(change)]
    if plan.refusals:
        lines.append("refused (unsafe on this node):")
        lines += _refusal_lines(plan.refusals, hint=True)
    if plan.forced:
        lines.append("overridden by --force:")
        lines += _refusal_lines(plan.forced, hint=False)
    if plan.skipped:
        lines.append("skipped:")
        lines += [f"  - {label(s.subsystem, s.target)}: {s.reason}" for s in plan.skipped]
    if plan.pending_reboot_args:
        lines.append("pending: reboot for " + " ".join(plan.pending_reboot_args))
    if plan.kubelet_restart_pending:
        lines.append("pending: kubelet restart (settings it reads only at start changed while it ran)")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def apply_text(result: ApplyResult) -> str:
    lines: list[str] = []
    if result.dry_run:
        lines.append(plan_text(result.plan))
        lines.append(f"dry run: {len(result.writes)} write{'s' if len(result.writes) != 1 else ''} would be made")
        lines += [f"  {w}" for w in result.writes]
        return "\n".join(lines)
    if result.plan.refusals:
        lines.append(plan_text(result.plan))
        lines.append("nothing was written")
        return "\n".join(lines)
    for group in group_by_cpus(result.outcomes, lambda o: o.change.detail, _outcome_key):
        outcome = group.first
        message = f": {outcome.message}" if outcome.message else ""
        lines.append(f"  {outcome.status:<16} {group.label(outcome.change.subsystem, outcome.change.target)}{message}")
    if result.failure:
        restored = sum(1 for o in result.outcomes if o.status == "restored")
        broken = [o for o in result.outcomes if o.status == "restore-failed"]
        lines.insert(0, f"apply failed: {result.failure}")
        lines.append(f"rolled back: {restored} change{'s' if restored != 1 else ''} restored"
                     + (f", {len(broken)} could NOT be restored (still journaled; run `nodeagent revert`)"
                        if broken else ", the node is as it was"))
    elif not result.outcomes:
        lines.insert(0, f"profile {result.plan.profile}: nothing to change")
    else:
        lines.insert(0, f"profile {result.plan.profile}: {len(result.outcomes)} change"
                        f"{'s' if len(result.outcomes) != 1 else ''} applied")
    lines += [f"note: {m}" for m in result.messages]
    lines += [f"note: {n}" for n in result.plan.notes]
    if result.plan.skipped:
        lines += [f"skipped: {label(s.subsystem, s.target)}: {s.reason}" for s in result.plan.skipped]
    return "\n".join(lines)


def _outcome_key(outcome: Outcome) -> Hashable:
    return outcome.status, outcome.message, _change_key(outcome.change)


def revert_text(result: RevertResult) -> str:
    lines = [result.message] if result.message else []
    lines += [f"  restored  {r}" for r in result.restored]
    lines += [f"  FAILED    {f}" for f in result.failed]
    lines += [f"  skipped   {s}" for s in result.skipped]
    if not result.message:
        lines.insert(0, "revert: every journaled value restored" if not result.failed
                     else "revert: some values could not be restored; they stay in the journal")
    return "\n".join(lines)
