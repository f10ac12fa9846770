"""Applying the selected profile from the daemon: the same plan/apply path as ``nodeagent apply``.

Each reconcile plans (pure, cheap) and applies only when the plan has changes: a converged node
writes nothing. Around that single code path the daemon adds what a long-running loop needs:

* **no hammering**: a failed apply (rolled back by ``execute``) is retried after a back-off that
  doubles from one reconcile interval up to an hour, unless the profile or the plan changes; an
  apply that flapped a GPU's driver every minute would be worse than one that waits;
* **no Event spam**: an invalid or refused profile is reported once per distinct message, not
  every minute;
* **one apply at a time**: when the plan has changes, the host's apply lock is taken (without
  waiting: an operator's ``nodeagent apply`` may be running) and the node is discovered and planned
  again under it, so the changes applied are those of the host as it is, not as it was before
  another apply finished; a held lock is the ``busy`` state, retried at the next reconcile;
* **SIGTERM**: ``execute`` is given a clock that jumps to the end of time once the daemon is
  stopping, so a hugepage allocation that is still retrying gives up at once and is handled as
  apply always handles a short allocation (rolled back, or deferred to boot for 1Gi pages); the
  journal stays consistent because ``execute`` itself runs to its end.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodeagent.backoff import Backoff
from nodeagent.daemon.profiles import LoadedProfile
from nodeagent.daemon.status import PrepStatus
from nodeagent.host import Host
from nodeagent.inventory import Inventory

# nodeagent.prep (planner, handlers, journal, boot loaders: ~30 modules, ~1.5 MiB resident) and the
# profile schema are imported by the first profile that selects this node: an observe-only daemon
# never loads them.
if TYPE_CHECKING:
    from nodeagent.prep.apply import ApplyResult
    from nodeagent.prep.context import PlanContext
    from nodeagent.prep.model import Plan

log = logging.getLogger(__name__)

Reporter = Callable[[bool, str], None]
"""(ok, message): a PrepApplied / PrepFailed Event (or a log line without a cluster)."""

MAX_EVENT_CHANGES = 8


@dataclass(frozen=True)
class PrepOutcome:
    """What one reconcile's prep did (``state``: see :class:`PrepStatus`)."""

    state: PrepStatus
    message: str = ""
    wrote: bool = False


class PrepRunner:
    def __init__(self, host: Host, report: Reporter, *, stop: threading.Event, retry_base_s: float,
                 retry_max_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.report = report
        self.stop = stop
        self.backoff = Backoff(base=retry_base_s, cap=max(retry_max_s, retry_base_s), jitter=0.0)
        self.clock = clock
        self.retry_at: float | None = None
        self._failed_key: tuple[str, tuple[str, ...]] | None = None
        self._reported: str | None = None  # the last once-only message (invalid / refused)

    @property
    def failures(self) -> int:
        """Failed applies in a row of the same profile and plan."""
        return self.backoff.failures

    def reset_backoff(self) -> None:
        """Forget past failures (SIGHUP: the operator asks for a fresh attempt)."""
        self.backoff.reset()
        self.retry_at = None
        self._failed_key = None
        self._reported = None

    def run(self, loaded: LoadedProfile, inventory: Inventory, *,
            annotations: Mapping[str, str] | None = None) -> PrepOutcome:
        outcome, planned = self._plan(loaded, inventory, annotations)
        if outcome is not None:
            return outcome
        from nodeagent.prep.lock import LockBusyError, apply_lock

        try:
            with apply_lock(self.host):
                # Under the lock: the host as it is now (another apply may have finished meanwhile).
                from nodeagent.discover import discover

                with self.host.snapshot():  # discovery's reading serves the plan too
                    outcome, planned = self._plan(loaded, discover(self.host), annotations)
                if outcome is not None:
                    return outcome
                return self._apply(loaded, planned)
        except LockBusyError as exc:
            return PrepOutcome(PrepStatus.BUSY, f"profile {loaded.name} not applied now: {exc}; retrying at the "
                                                "next reconcile")

    def _plan(self, loaded: LoadedProfile, inventory: Inventory,
              annotations: Mapping[str, str] | None) -> tuple[PrepOutcome | None, tuple[Plan, PlanContext] | None]:
        """The plan, or the outcome that ends this reconcile's prep without applying."""
        from nodeagent.profile import ProfileError, parse_profile_text

        try:
            profile = parse_profile_text(loaded.text, inventory, source=loaded.file)
        except ProfileError as exc:
            message = f"profile {loaded.name} ({loaded.file}) does not fit this node: " + "; ".join(exc.errors)
            self._report_once(False, message)
            return PrepOutcome(PrepStatus.INVALID, message), None
        from nodeagent.prep.model import PrepOptions
        from nodeagent.prep.plan import build_plan, plan_for_host

        pctx = plan_for_host(self.host, inventory, profile,
                             options=PrepOptions(profile_path=loaded.path),
                             annotations=dict(annotations) if annotations is not None else None)
        plan = build_plan(pctx)
        if plan.refusals:
            reasons = "; ".join(f"{r.label}: {r.reason}" for r in plan.refusals)
            message = f"profile {loaded.name} refused on this node, nothing applied: {reasons}"
            self._report_once(False, message)
            return PrepOutcome(PrepStatus.REFUSED, message), None
        if not plan.changes:
            self._note_converged()
            return PrepOutcome(PrepStatus.PENDING if _pending(plan) else PrepStatus.CONVERGED,
                               _pending_text(plan)), None
        key = (loaded.digest, tuple(c.key for c in plan.changes))
        if self._failed_key == key and self.retry_at is not None and self.clock() < self.retry_at:
            wait = self.retry_at - self.clock()
            return PrepOutcome(PrepStatus.BACKOFF, f"retrying the failed apply of {loaded.name} in {wait:.0f}s"), None
        if self.stop.is_set():
            return PrepOutcome(PrepStatus.STOPPED, "shutting down: not starting an apply"), None
        return None, (plan, pctx)

    def _apply(self, loaded: LoadedProfile, planned: tuple[Plan, PlanContext] | None) -> PrepOutcome:
        assert planned is not None
        plan, pctx = planned
        key = (loaded.digest, tuple(c.key for c in plan.changes))
        log.info("applying profile %s: %d change(s)", loaded.name, len(plan.changes),
                 extra={"profile": loaded.name, "changes": [c.label for c in plan.changes]})
        from nodeagent.prep.apply import execute

        result = execute(plan, pctx, self.host, sleep=self._sleep, clock=self._clock)
        return self._finish(loaded, result, key)

    # --- results -----------------------------------------------------------------------------

    def _finish(self, loaded: LoadedProfile, result: ApplyResult, key: tuple[str, tuple[str, ...]]) -> PrepOutcome:
        from nodeagent.prep.apply import EXIT_CONVERGED, EXIT_PENDING

        wrote = bool(result.writes)
        if result.exit_code in (EXIT_CONVERGED, EXIT_PENDING):
            self.backoff.reset()
            self.retry_at = None
            self._failed_key = None
            self._reported = None
            message = applied_message(loaded.name, result)
            log.info("%s", message, extra={"profile": loaded.name, "exit_code": result.exit_code})
            self.report(True, message)
            state = PrepStatus.PENDING if result.exit_code == EXIT_PENDING else PrepStatus.APPLIED
            return PrepOutcome(state, message, wrote)
        if self._failed_key != key:
            self.backoff.reset()  # a different profile or plan starts from the first delay
        self._failed_key = key
        delay = self.backoff.next_delay()
        self.retry_at = self.clock() + delay
        message = failed_message(loaded.name, result, delay)
        log.error("%s", message, extra={"profile": loaded.name, "exit_code": result.exit_code,
                                        "failures": self.failures})
        self.report(False, message)
        return PrepOutcome(PrepStatus.FAILED, message, wrote)

    def _report_once(self, ok: bool, message: str) -> None:
        if message != self._reported:
            self._reported = message
            (log.info if ok else log.warning)("%s", message)
            self.report(ok, message)

    def _note_converged(self) -> None:
        self._reported = None
        self._failed_key = None
        self.backoff.reset()
        self.retry_at = None

    # --- SIGTERM-aware time for execute -------------------------------------------------------

    def _clock(self) -> float:
        return math.inf if self.stop.is_set() else time.monotonic()

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)


def _pending(plan: Plan) -> bool:
    return bool(plan.pending_reboot_args) or plan.kubelet_restart_pending


def _pending_text(plan: Plan) -> str:
    parts = []
    if plan.pending_reboot_args:
        parts.append("reboot required for " + " ".join(plan.pending_reboot_args))
    if plan.kubelet_restart_pending:
        parts.append("kubelet restart required (hugepages changed while it ran)")
    return "; ".join(parts)


def applied_message(name: str, result: ApplyResult) -> str:
    done = [o.change.label for o in result.outcomes if o.status != "restored"]
    shown = ", ".join(done[:MAX_EVENT_CHANGES]) + (f" and {len(done) - MAX_EVENT_CHANGES} more"
                                                   if len(done) > MAX_EVENT_CHANGES else "")
    text = f"profile {name} applied: {len(done)} change(s) ({shown})"
    if result.messages:
        text += "; " + "; ".join(result.messages)
    return text


def failed_message(name: str, result: ApplyResult, retry_in: float) -> str:
    restored = sum(1 for o in result.outcomes if o.status == "restored")
    unrestored = [o.change.label for o in result.outcomes if o.status == "restore-failed"]
    text = f"profile {name} failed: {result.failure or 'unknown error'}"
    if unrestored:
        text += f"; could NOT restore {', '.join(unrestored)} (kept in the journal for revert)"
    elif restored:
        text += f"; rolled back ({restored} change(s) restored)"
    return text + f"; next attempt in {retry_in:.0f}s"
