"""Text for people: the plan as a diff, the apply and revert results."""

from __future__ import annotations

from typing import Any

from nodeagent.prep.apply import ApplyResult, RevertResult
from nodeagent.prep.model import Effect, Plan

_WHEN = {Effect.NOW: "now", Effect.KUBELET_RESTART: "after kubelet restart", Effect.REBOOT: "after reboot"}


def value(item: Any) -> str:
    if item is None:
        return "(none)"
    if isinstance(item, list):
        return " ".join(str(i) for i in item) or "(none)"
    return str(item)


def plan_text(plan: Plan) -> str:
    lines: list[str] = []
    count = len(plan.changes)
    if count:
        lines.append(f"profile {plan.profile}: {count} change{'s' if count != 1 else ''}")
    elif not plan.refusals:
        lines.append(f"profile {plan.profile}: nothing to change, the node is converged")
    else:
        lines.append(f"profile {plan.profile}: nothing can change until the refusals are resolved")
    width = max((len(c.subsystem) for c in plan.changes), default=0)
    for change in plan.changes:
        flag = "" if change.reversible else "  (not reversible)"
        lines.append(f"  ~ {change.subsystem:<{width}}  {change.target}: {value(change.current)} -> "
                     f"{value(change.desired)}  [{_WHEN[change.effect]}]{flag}")
        if change.note:
            lines.append(f"      {change.note}")
    if plan.refusals:
        lines.append("refused (unsafe on this node):")
        for refusal in plan.refusals:
            hint = "  (--force overrides)" if refusal.forceable else ""
            lines.append(f"  ! {refusal.subsystem} {refusal.target}: {refusal.reason}{hint}")
    if plan.forced:
        lines.append("overridden by --force:")
        lines += [f"  ! {r.subsystem} {r.target}: {r.reason}" for r in plan.forced]
    if plan.skipped:
        lines.append("skipped:")
        lines += [f"  - {s.subsystem} {s.target}: {s.reason}" for s in plan.skipped]
    if plan.pending_reboot_args:
        lines.append("pending: reboot for " + " ".join(plan.pending_reboot_args))
    if plan.kubelet_restart_pending:
        lines.append("pending: kubelet restart (hugepages changed while it ran)")
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
    for outcome in result.outcomes:
        message = f": {outcome.message}" if outcome.message else ""
        lines.append(f"  {outcome.status:<16} {outcome.change.subsystem} {outcome.change.target}{message}")
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
        lines += [f"skipped: {s.subsystem} {s.target}: {s.reason}" for s in result.plan.skipped]
    return "\n".join(lines)


def revert_text(result: RevertResult) -> str:
    lines = [result.message] if result.message else []
    lines += [f"  restored  {r}" for r in result.restored]
    lines += [f"  FAILED    {f}" for f in result.failed]
    lines += [f"  skipped   {s}" for s in result.skipped]
    if not result.message:
        lines.insert(0, "revert: every journaled value restored" if not result.failed
                     else "revert: some values could not be restored; they stay in the journal")
    return "\n".join(lines)
