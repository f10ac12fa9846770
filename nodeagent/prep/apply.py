"""Executing a plan: journal first, then each change applied and verified; on failure, roll back.

``apply --dry-run`` runs exactly this code against a Host in dry-run mode, which records the
writes instead of making them (and so skips the read-backs, the lock and the journal).

Rollback restores, in reverse order, every change of this run, including the one that failed
halfway, from the values read immediately before each was applied; the journal is put back as it
was before the run. Changes made by earlier applies stay (and stay journaled for ``revert``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nodeagent.host import Host, HostError, HostRecord
from nodeagent.inventory import to_plain
from nodeagent.owned import JOURNAL_PATH
from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import AllocationPolicy, Handler, RunState
from nodeagent.prep.hugepages import ShortAllocationError
from nodeagent.prep.journal import Journal, JournalError, JournalGuard, missing_dirs, remove_created_dirs
from nodeagent.prep.lock import apply_lock
from nodeagent.prep.model import Action, Change, Effect, Plan, Subsystem
from nodeagent.prep.model import label as model_label
from nodeagent.prep.reboot import sentinel_change as reboot_sentinel_change
from nodeagent.prep.subsystems import BOOT_ARGS, HANDLERS

log = logging.getLogger(__name__)

EXIT_CONVERGED, EXIT_FAILED, EXIT_REFUSED, EXIT_PENDING = 0, 1, 2, 3


@dataclass
class Outcome:
    change: Change
    status: str  # applied | partial | deferred-to-boot | failed | restored | restore-failed
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"subsystem": self.change.subsystem, "target": self.change.target, "status": self.status,
                "message": self.message}


@dataclass
class ApplyResult:
    exit_code: int
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    failure: str | None = None
    reboot_required: bool = False
    kubelet_restart_required: bool = False
    messages: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    dry_run: bool = False
    record: HostRecord = field(default_factory=HostRecord)  # what this run did through the Host

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "dry_run": self.dry_run, "failure": self.failure,
                "reboot_required": self.reboot_required, "kubelet_restart_required": self.kubelet_restart_required,
                "outcomes": [o.to_dict() for o in self.outcomes], "messages": self.messages,
                "writes": self.writes, "plan": self.plan.to_dict()}


class ApplyFailedError(Exception):
    def __init__(self, change: Change, error: BaseException) -> None:
        self.change = change
        self.error = error
        super().__init__(f"{change.label}: {describe(error)}")


def describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        import errno as errno_names

        name = errno_names.errorcode.get(error.errno, str(error.errno))
        where = f" writing {error.filename}" if error.filename else ""
        return f"{name} ({error.strerror}){where}"
    return str(error)


def execute(plan: Plan, ctx: PlanContext, host: Host, *, sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic) -> ApplyResult:
    """Apply ``plan`` (computed from ``ctx``) through ``host``. Never raises for host errors."""
    result = ApplyResult(EXIT_CONVERGED, plan, dry_run=host.dry_run)
    if plan.refusals:
        result.exit_code = EXIT_REFUSED
        result.failure = "refused: " + "; ".join(f"{r.label}: {r.reason}" for r in plan.refusals)
        return result
    spec = ctx.profile.hugepages
    timeout = ctx.options.allocation_timeout_s
    if timeout is None:
        timeout = spec.allocation_timeout_s if spec is not None else 60.0
    state = RunState(AllocationPolicy(timeout, ctx.options.retry_interval_s, sleep, clock),
                     allow_partial=ctx.options.allow_partial)
    with host.recording(result.record) as record:
        if host.dry_run:
            _run(plan, ctx, host, state, result, journal=None, guard=None)
        else:
            try:
                with apply_lock(host) if plan.changes else contextlib.nullcontext():
                    journal = Journal.load(host)
                    guard = JournalGuard()
                    with _observing(host, guard):
                        _run(plan, ctx, host, state, result, journal=journal, guard=guard)
            except (HostError, JournalError) as exc:
                result.exit_code = EXIT_REFUSED if not result.outcomes else EXIT_FAILED
                result.failure = str(exc)
    result.writes = [f"{w.kind} {w.path}" + (f" = {_short(w.value)}" if w.kind == "write" else "")
                     for w in record.writes]
    return result


@contextlib.contextmanager
def _observing(host: Host, guard: JournalGuard) -> Iterator[None]:
    host.write_observers.append(guard)
    try:
        yield
    finally:
        host.write_observers.remove(guard)


def _short(value: str | None) -> str:
    text = (value or "").strip()
    return text if len(text) <= 40 else text[:37] + "..."


def _run(plan: Plan, ctx: PlanContext, host: Host, state: RunState, result: ApplyResult, *,
         journal: Journal | None, guard: JournalGuard | None) -> None:
    snapshot = journal.snapshot() if journal is not None else None
    done: list[tuple[Change, Any]] = []
    boot_sizes: set[int] = set()
    last = (Subsystem.BOOTARGS, Subsystem.REBOOT)  # applied after every other change, in this order
    changes = [c for c in plan.changes if c.subsystem not in last]
    try:
        for change in changes:
            _apply_one(change, host, state, result, journal=journal, guard=guard, done=done,
                       boot_sizes=boot_sizes)
        final = next((c for c in plan.changes if c.subsystem == Subsystem.BOOTARGS), None)
        if boot_sizes:
            final, notes = BOOT_ARGS.change(ctx, boot_sizes)
            result.messages.extend(notes)
        if final is not None:
            _apply_one(final, host, state, result, journal=journal, guard=guard, done=done,
                       boot_sizes=boot_sizes)
        sentinel = next((c for c in plan.changes if c.subsystem == Subsystem.REBOOT), None)
        if sentinel is None and boot_sizes:  # the reboot became necessary during this apply
            sentinel = reboot_sentinel_change(ctx)
        if sentinel is not None:
            _apply_one(sentinel, host, state, result, journal=journal, guard=guard, done=done,
                       boot_sizes=boot_sizes)
    except ApplyFailedError as failed:
        result.exit_code = EXIT_FAILED
        result.failure = str(failed)
        _rollback(host, done, result, guard, state)
        if journal is not None and snapshot is not None and guard is not None:
            _restore_journal(host, snapshot, result, guard)
        return
    if journal is not None and guard is not None and done:
        if any(c.effect is Effect.KUBELET_RESTART for c, _ in done):
            journal.kubelet_restart_required_at = time.time()
        journal.profile = ctx.profile.name
        for entry in journal.entries:
            if entry.get("status") == "applying":
                entry["status"] = "applied"
        journal.save(host)
    _finish(plan, ctx, result, done)


def _apply_one(change: Change, host: Host, state: RunState, result: ApplyResult, *, journal: Journal | None,
               guard: JournalGuard | None, done: list[tuple[Change, Any]], boot_sizes: set[int]) -> None:
    handler = HANDLERS[change.action]
    try:
        before = handler.before(host, change)  # UnreadableError: never change what cannot be restored
    except (OSError, HostError, RuntimeError) as exc:
        result.outcomes.append(Outcome(change, "failed", describe(exc)))
        raise ApplyFailedError(change, exc) from exc
    entry: dict[str, Any] = {}
    created = missing_dirs(host, change.path) if change.action in _FILE_ACTIONS and not host.dry_run else []
    state.created_dirs[change.key] = created
    if journal is not None and guard is not None:
        entry = journal.record(change, before, created_dirs=created)
        journal.save(host)  # before the first write of this change
        guard.active = entry["key"]
    done.append((change, before))
    try:
        handler.apply(host, change, state)
        entry["status"] = "applied"  # on disk with the next save
        result.outcomes.append(Outcome(change, "applied"))
    except ShortAllocationError as short:
        _short_allocation(short, host, state, result, boot_sizes=boot_sizes, before=before)
    except (OSError, HostError, RuntimeError) as exc:
        result.outcomes.append(Outcome(change, "failed", describe(exc)))
        raise ApplyFailedError(change, exc) from exc
    finally:
        if guard is not None:
            guard.active = None


#: Actions that write a whole file, and so may create its directory.
_FILE_ACTIONS = frozenset({Action.FILE, Action.GRUB_DROPIN, Action.KUBELET_FILE})


def _short_allocation(short: ShortAllocationError, host: Host, state: RunState, result: ApplyResult, *,
                      boot_sizes: set[int], before: Any) -> None:
    change = short.change
    if change.detail.get("gigantic"):
        if not state.allow_partial:
            HANDLERS[Action.HUGEPAGES].restore(host, change.path, change.target, before, change.detail)
        boot_sizes.add(int(change.detail["size_kb"]))
        kept = short.got if state.allow_partial else before
        result.outcomes.append(Outcome(change, "deferred-to-boot",
                                       f"{short}; {kept} kept at runtime, the full count goes on the boot "
                                       "command line (reboot required)"))
        return
    if state.allow_partial:
        result.outcomes.append(Outcome(change, "partial", f"{short}; kept (--allow-partial)"))
        return
    result.outcomes.append(Outcome(change, "failed", str(short)))
    raise ApplyFailedError(change, short)


def _rollback(host: Host, done: list[tuple[Change, Any]], result: ApplyResult, guard: JournalGuard | None,
              state: RunState) -> None:
    for change, before in reversed(done):
        if not change.reversible:
            result.messages.append(f"not reversible, left as is: {change.label}")
            continue
        if guard is not None:
            guard.active = "rollback"
        try:
            HANDLERS[change.action].restore(host, change.path, change.target, before, change.detail)
            result.outcomes.append(Outcome(change, "restored", f"back to {_shown(before)}"))
            remove_created_dirs(host, state.created_dirs.get(change.key, []))
        except (OSError, HostError, RuntimeError) as exc:
            result.outcomes.append(Outcome(change, "restore-failed", describe(exc)))
        finally:
            if guard is not None:
                guard.active = None


def _restore_journal(host: Host, snapshot: Journal, result: ApplyResult, guard: JournalGuard) -> None:
    """The journal returns to its state before the run, plus any change that could not be undone."""
    unrestored = {o.change.key for o in result.outcomes if o.status == "restore-failed"}
    journal = snapshot
    if unrestored:
        current = Journal.load(host)
        for entry in current.entries:
            if entry.get("key") in unrestored and journal.find(entry["key"]) is None:
                journal.entries.append(entry)
        journal.save(host)
        return
    guard.active = "journal"
    try:
        journal.restore_file(host)
    finally:
        guard.active = None


def _finish(plan: Plan, ctx: PlanContext, result: ApplyResult, done: list[tuple[Change, Any]]) -> None:
    deferred = any(o.status == "deferred-to-boot" for o in result.outcomes)
    reboot = bool(plan.pending_reboot_args) or deferred or any(
        c.effect is Effect.REBOOT for c, _ in done if c.subsystem == Subsystem.BOOTARGS)
    kubelet = plan.kubelet_restart_pending or any(c.effect is Effect.KUBELET_RESTART for c, _ in done)
    result.reboot_required = reboot
    result.kubelet_restart_required = kubelet
    if reboot:
        result.messages.append("reboot required for the boot arguments to take effect")
    if kubelet:
        result.messages.append(_restart_message(plan, done))
    if any(o.status == "partial" for o in result.outcomes):
        result.messages.append("some hugepage pools are short (--allow-partial); apply again to retry")
    result.exit_code = EXIT_PENDING if (reboot or kubelet) else EXIT_CONVERGED


def _restart_message(plan: Plan, done: list[tuple[Change, Any]]) -> str:
    """Why kubelet must restart: the hugepage capacity it reads at start, and/or its own configuration."""
    restart = [c for c, _ in done if c.effect is Effect.KUBELET_RESTART]
    config = any(c.subsystem == Subsystem.KUBELET for c in restart)
    pages = any(c.subsystem != Subsystem.KUBELET for c in restart)
    if not config:
        return ("restart kubelet: it reads hugepage capacity only at start" if pages or not restart else
                "restart kubelet: settings it reads only at start changed while it ran")
    why = "restart kubelet: it reads its CPU/topology/memory manager settings only at start"
    return why + (" (and hugepage capacity)" if pages else "") + \
        "; drain the node first (its pods are admitted again under the new managers)"


def _shown(value: Any) -> str:
    if isinstance(value, str) and "\n" in value:
        return "the previous file"
    if value is None:
        return "absent/none"
    return repr(value)


# --- revert ----------------------------------------------------------------------------------


@dataclass
class RevertResult:
    exit_code: int
    restored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


def _handler(action: Any) -> Handler | None:
    """The handler a journal entry names (its ``action`` is the Action's string value), if known."""
    try:
        return HANDLERS.get(Action(str(action)))
    except ValueError:
        return None


def revert(host: Host, *, wait_s: float = 0.0, on_wait: Callable[[str], None] | None = None) -> RevertResult:
    """Restore every value the journal recorded, newest first; remove the journal when all are back.

    Entries that cannot be restored stay in the journal, so that ``revert`` can be run again; so do
    malformed entries (:func:`~nodeagent.prep.journal.entry_problem`), which are reported and never
    guessed at. Directories apply created for the files it wrote are removed when left empty.
    """
    result = RevertResult(0)
    try:
        with apply_lock(host, wait_s=wait_s, on_wait=on_wait):
            journal = Journal.load(host, strict=False)
            if not journal.exists:
                result.message = f"nothing to revert: {JOURNAL_PATH} is absent"
                return result
            guard = JournalGuard()
            with _observing(host, guard):
                remaining: list[Any] = []
                for index in reversed(range(len(journal.entries))):
                    entry = journal.entries[index]
                    if index in journal.invalid:
                        result.failed.append(f"journal entry {index + 1}: {journal.invalid[index]}; kept in the "
                                             "journal, not restored (fix or remove it by hand)")
                        remaining.append(entry)
                        continue
                    label = model_label(str(entry.get("subsystem")), str(entry.get("target")))
                    if not entry.get("reversible", True):
                        result.skipped.append(f"{label}: not reversible, left as is")
                        continue
                    handler = _handler(entry.get("action"))
                    if handler is None:
                        result.failed.append(f"{label}: unknown action {entry.get('action')!r}")
                        remaining.append(entry)
                        continue
                    guard.active = "revert"
                    try:
                        handler.restore(host, entry.get("path"), str(entry.get("target")), entry.get("old"),
                                        entry.get("detail") or {})
                        result.restored.append(f"{label}: back to {_shown(entry.get('old'))}")
                        remove_created_dirs(host, entry.get("created_dirs") or [])
                    except (OSError, HostError, RuntimeError) as exc:
                        result.failed.append(f"{label}: {describe(exc)}")
                        remaining.append(entry)
                    finally:
                        guard.active = None
                guard.active = "journal"
                if remaining:
                    journal.entries = list(reversed(remaining))
                    journal.save(host)
                else:
                    host.remove(JOURNAL_PATH)
                guard.active = None
    except (HostError, JournalError) as exc:
        result.exit_code = 1
        result.message = str(exc)
        return result
    result.exit_code = 1 if result.failed else 0
    return result
