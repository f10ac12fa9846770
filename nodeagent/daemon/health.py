"""``/healthz`` (liveness) and ``/readyz`` (readiness), answered from the daemon's status.

* ``/healthz`` fails only when restarting the process would help: the worker thread is gone, or
  one reconcile step has been running for longer than ``stuck_after`` (a sysfs read wedged on a
  dying device, an API call that ignores its timeout). A slow apply is not a reason: a liveness
  kill in the middle of one is exactly what SIGTERM handling exists to avoid.
* ``/readyz`` is ready when the first full reconcile is done (inventory taken, profile selected
  and applied or refused) and, when publishing, the latest labels and NodeResourceTopology are on
  the API server. The body says what is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nodeagent.daemon.status import DaemonStatus
from nodeagent.httpserver import Request, Response

Synced = Callable[[], tuple[bool, str]]
"""Publisher state: (synced, what is wrong when not)."""


def liveness(status: DaemonStatus, stuck_after_s: float) -> Callable[[Request], Response]:
    def route(_request: Request) -> Response:
        snap = status.snapshot()
        if not snap.worker_alive and not snap.stopping:
            return Response(503, b"reconcile worker is not running\n")
        if snap.step_started_at is not None:
            running = time.monotonic() - snap.step_started_at
            if running > stuck_after_s:
                text = f"reconcile step ({snap.step_trigger}) running for {running:.0f}s (limit {stuck_after_s:.0f}s)\n"
                return Response(503, text.encode())
        return Response(200, b"ok\n")

    return route


def not_ready_reasons(status: DaemonStatus, synced: Synced | None) -> list[str]:
    snap = status.snapshot()
    reasons: list[str] = []
    if snap.stopping:
        reasons.append("shutting down")
    if snap.first_reconcile_at is None:
        why = snap.waiting or snap.last_error or (f"in progress ({snap.step_trigger})" if snap.step_trigger else
                                                  "not started")
        reasons.append(f"first reconcile not done: {why}")
    if synced is not None:
        ok, why = synced()
        if not ok:
            reasons.append(f"labels not published: {why}")
    return reasons


def readiness(status: DaemonStatus, synced: Synced | None) -> Callable[[Request], Response]:
    def route(_request: Request) -> Response:
        reasons = not_ready_reasons(status, synced)
        if reasons:
            return Response(503, ("\n".join(reasons) + "\n").encode())
        return Response(200, b"ok\n")

    return route
