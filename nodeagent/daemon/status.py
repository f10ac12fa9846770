"""What the daemon is doing, shared between its worker, its HTTP endpoints and its self-metrics.

One lock, small plain fields: the worker writes, ``/healthz``, ``/readyz`` and a scrape read a
consistent :meth:`DaemonStatus.snapshot`.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


class PrepStatus(enum.StrEnum):
    """Where the daemon's node prep stands after a reconcile: ``nodeagent_prep_state{state}``'s values.

    A ``StrEnum``, so each member is also its label value (and compares equal to it).
    """

    NONE = "none"  # no profile selects this node: observe only
    READ_ONLY = "read-only"  # a profile is selected but --read-only: not applied
    CONVERGED = "converged"  # nothing to change
    APPLIED = "applied"
    PENDING = "pending"  # applied; a reboot or a kubelet restart is needed
    FAILED = "failed"  # rolled back
    REFUSED = "refused"  # unsafe on this node
    INVALID = "invalid"  # the profile does not fit this host
    BACKOFF = "backoff"  # waiting to retry a failure
    BUSY = "busy"  # another apply (an operator's) holds the host's lock; retried at the next reconcile
    STOPPED = "stopped"  # the daemon is shutting down; not started


@dataclass(frozen=True)
class StatusSnapshot:
    started_at: float
    first_reconcile_at: float | None
    last_reconcile_at: float | None
    last_duration_s: float
    reconciles: dict[str, int]
    failures: int
    last_error: str | None
    step_started_at: float | None  # time.monotonic() of the step in progress, None when idle
    step_trigger: str | None
    waiting: str | None  # why the last step could not finish (e.g. the Node not seen yet)
    profile: str | None
    profile_file: str | None
    conflicts: tuple[str, ...]
    profile_errors: dict[str, str]
    prep_state: PrepStatus
    prep_message: str
    uevents: int
    stopping: bool
    worker_alive: bool


@dataclass
class DaemonStatus:
    started_at: float = field(default_factory=time.time)
    first_reconcile_at: float | None = None
    last_reconcile_at: float | None = None
    last_duration_s: float = 0.0
    reconciles: Counter[str] = field(default_factory=Counter)
    failures: int = 0
    last_error: str | None = None
    step_started_at: float | None = None
    step_trigger: str | None = None
    waiting: str | None = None
    profile: str | None = None
    profile_file: str | None = None
    conflicts: tuple[str, ...] = ()
    profile_errors: dict[str, str] = field(default_factory=dict)
    prep_state: PrepStatus = PrepStatus.NONE
    prep_message: str = ""
    uevents: int = 0
    stopping: bool = False
    worker_alive: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **changes: object) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)

    def step_started(self, trigger: str) -> None:
        with self.lock:
            self.step_started_at = time.monotonic()
            self.step_trigger = trigger

    def step_finished(self, trigger: str, *, complete: bool, error: str | None = None) -> None:
        with self.lock:
            started = self.step_started_at
            self.step_started_at = None
            self.step_trigger = None
            self.last_duration_s = time.monotonic() - started if started is not None else 0.0
            self.reconciles[trigger] += 1
            if error is not None:
                self.failures += 1
                self.last_error = error
                return
            self.last_error = None
            if complete:
                now = time.time()
                self.last_reconcile_at = now
                if self.first_reconcile_at is None:
                    self.first_reconcile_at = now

    def count_uevent(self) -> None:
        with self.lock:
            self.uevents += 1

    def snapshot(self) -> StatusSnapshot:
        with self.lock:
            return StatusSnapshot(
                self.started_at, self.first_reconcile_at, self.last_reconcile_at, self.last_duration_s,
                dict(self.reconciles), self.failures, self.last_error, self.step_started_at, self.step_trigger,
                self.waiting, self.profile, self.profile_file, self.conflicts, dict(self.profile_errors),
                self.prep_state, self.prep_message, self.uevents, self.stopping, self.worker_alive)
