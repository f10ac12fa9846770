"""Kubernetes Events on the Node: prep applied or failed, a workload became ready or stopped being ready.

Events are informational: a failure to send one is logged and never holds up label publishing.
They are queued (bounded) and sent by whoever drives the publisher — the loop's reconciler
thread, or the one-shot publish — so that callers (``apply``, the daemon) never block on the API.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodeagent.k8s.client import KubeApi

log = logging.getLogger(__name__)

COMPONENT = "nodeagent"
NAMESPACE = "default"  # Node events live there (kubelet, node controller)
MAX_MESSAGE = 1024
MAX_QUEUED = 100

PREP_APPLIED = "PrepApplied"
PREP_FAILED = "PrepFailed"
WORKLOAD_READY = "WorkloadReady"
WORKLOAD_NOT_READY = "WorkloadNotReady"

_sequence = itertools.count()


@dataclass(frozen=True)
class NodeEvent:
    reason: str
    message: str
    type: str = "Normal"  # Normal | Warning
    at: float = 0.0  # epoch seconds; 0: when queued


def event_body(node_name: str, node_uid: str | None, event: NodeEvent) -> dict[str, Any]:
    """A core/v1 Event about the Node, as kubelet words its own (``kubectl describe node`` shows it)."""
    at = event.at or time.time()
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # client-go names events <object>.<unix nanos in hex>; the counter keeps two in one tick apart.
    name = f"{node_name}.{int(at * 1e9) + next(_sequence) % 1000:x}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid or node_name},
        "reason": event.reason,
        "message": event.message[:MAX_MESSAGE],
        "type": event.type,
        "source": {"component": COMPONENT, "host": node_name},
        "reportingComponent": COMPONENT,
        "reportingInstance": node_name,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def readiness_event(workload: str, ready: bool, reasons: tuple[str, ...] | list[str]) -> NodeEvent:
    if ready:
        return NodeEvent(WORKLOAD_READY, f"host is ready for {workload} VMs")
    why = "; ".join(reasons) or "requirements not met"
    return NodeEvent(WORKLOAD_NOT_READY, f"host is no longer ready for {workload} VMs: {why}", "Warning")


def prep_event(ok: bool, message: str) -> NodeEvent:
    return NodeEvent(PREP_APPLIED, message) if ok else NodeEvent(PREP_FAILED, message, "Warning")


class EventRecorder:
    """A bounded queue of Node events, sent in order by :meth:`flush`."""

    def __init__(self, node_name: str, *, enabled: bool = True, max_queued: int = MAX_QUEUED) -> None:
        self.node_name = node_name
        self.enabled = enabled
        self._queue: deque[NodeEvent] = deque(maxlen=max_queued)
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0

    def record(self, event: NodeEvent) -> None:
        if not self.enabled:
            return
        if not event.at:
            event = NodeEvent(event.reason, event.message, event.type, time.time())
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(event)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def flush(self, api: KubeApi, node_uid: str | None) -> bool:
        """Send what is queued. Returns False when a transient error left events for the next flush."""
        from nodeagent.k8s.client import ApiError

        while True:
            with self._lock:
                if not self._queue:
                    return True
                event = self._queue[0]
            try:
                api.create_event(event_body(self.node_name, node_uid, event), NAMESPACE)
            except ApiError as exc:
                if exc.retryable and not exc.conflict:
                    log.info("event %s not sent yet: %s", event.reason, exc)
                    return False
                log.warning("event %s dropped: %s", event.reason, exc)
                self.dropped += 1
            else:
                self.sent += 1
            with self._lock:
                if self._queue and self._queue[0] is event:
                    self._queue.popleft()
