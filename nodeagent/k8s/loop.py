"""The publisher as a long-running loop: what ``serve`` drives.

Two threads:

* the **watcher** lists its own Node once, then watches it (field selector ``metadata.name``)
  from that resourceVersion, re-opening the watch when the API server ends it (after
  ``watch_timeout`` to twice that, at random, as client-go's reflector does) and re-listing only
  on ``410 Gone``. Every event replaces the observed Node. Nothing polls.
* the **reconciler** wakes when the observed Node or the desired state changes (or on the resync
  timer), compares them, and patches only the difference — so a label someone removes comes back
  after the one watch event that shows it gone, and a converged node costs no writes at all.

Errors back off exponentially with jitter; 409 conflicts are re-read and retried at once.

``synced`` (for ``/readyz``) is true when the latest desired state was written without error.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodeagent.backoff import Backoff, jittered
from nodeagent.inventory import Inventory
from nodeagent.k8s.client import ApiError, KubeApi
from nodeagent.k8s.desired import DesiredState, desired_state
from nodeagent.k8s.events import EventRecorder, NodeEvent, prep_event
from nodeagent.k8s.nodediff import NodeView
from nodeagent.k8s.publisher import Publisher
from nodeagent.k8s.usage import TopologyUsage
from nodeagent.labels import LabelConfig, ProfileLike

if TYPE_CHECKING:
    from nodeagent.workloads import WorkloadTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """Timings. The defaults are for production; tests shrink them."""

    resync_period: float = 300.0  # re-compare desired and observed without any event (no request)
    watch_timeout: float = 300.0  # asked of the API server per watch; randomised up to 2x
    topology_verify_period: float = 3600.0  # re-read the NodeResourceTopology (one GET)
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    min_watch_seconds: float = 1.0  # a watch that ends sooner, with no event, counts as a failure
    events: bool = True


@dataclass
class LoopStats:
    reconciles: int = 0
    node_writes: int = 0
    topology_writes: int = 0
    watches: int = 0
    relists: int = 0
    watch_events: int = 0
    errors: int = 0
    last_error: str | None = None
    last_sync: float | None = None  # time.time() of the last error-free reconcile


@dataclass
class _Shared:
    desired: DesiredState | None = None
    generation: int = 0
    synced_generation: int = -1
    observed: NodeView | None = None
    dirty: bool = False
    failing: bool = False
    retry_at: float | None = None


def _delay(backoff: Backoff, exc: ApiError) -> float:
    """The back-off delay, but never shorter than what the server asked for (Retry-After)."""
    return max(backoff.next_delay(), exc.retry_after or 0.0)


def _newer(candidate: str | None, current: str | None) -> bool:
    """Whether ``candidate`` is a later resourceVersion than ``current``.

    resourceVersions are opaque by contract, but every API server in practice hands out etcd
    revisions; where both are integers they are compared as such, so that a late watch event can
    never overwrite the fresher Node a PATCH returned. Anything else counts as newer.
    """
    if current is None or candidate is None:
        return True
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return candidate != current


class PublisherLoop:
    """Keeps one Node's labels, taints and NodeResourceTopology at the desired state."""

    def __init__(self, api: KubeApi, node_name: str, *, config: LoopConfig | None = None,
                 label_config: LabelConfig | None = None, topology: bool = True,
                 extra_gpu_resources: Mapping[str, str] | None = None, rng: random.Random | None = None,
                 usage_source: Callable[[Inventory], TopologyUsage] | None = None) -> None:
        self.api = api
        self.node_name = node_name
        self.config = config or LoopConfig()
        self.label_config = label_config or LabelConfig()
        self.topology = topology
        self.extra_gpu_resources = dict(extra_gpu_resources or {})
        # What running VMs/pods hold, for the topology's ``available`` (None: available = allocatable).
        self.usage_source = usage_source
        self.rng = rng or random.Random()
        self.events = EventRecorder(node_name, enabled=self.config.events)
        self.publisher = Publisher(api, node_name, events=self.events)
        self.stats = LoopStats()
        self._shared = _Shared()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- the desired state -------------------------------------------------------------------

    def update(self, inventory: Inventory, profile: ProfileLike | None = None,
               workloads: WorkloadTable | None = None) -> None:
        """Recompute the desired state from a fresh Inventory (and the node's profile and workload classes).

        Raises :class:`~nodeagent.labels.LabelError` for a profile Kubernetes would reject; the
        previous desired state stays in force.
        """
        usage = self.usage_source(inventory) if self.topology and self.usage_source is not None else None
        self.set_desired(desired_state(inventory, profile, node_name=self.node_name, label_config=self.label_config,
                                       topology=self.topology, extra_gpu_resources=self.extra_gpu_resources,
                                       usage=usage, workloads=workloads))

    def set_desired(self, desired: DesiredState) -> None:
        with self._cond:
            if self._shared.desired == desired:
                return
            self._shared.desired = desired
            self._shared.generation += 1
            self._shared.dirty = True
            self._cond.notify_all()

    def report_prep(self, ok: bool, message: str) -> None:
        """Queue a PrepApplied / PrepFailed Event on the Node (sent by the reconciler)."""
        self.report(prep_event(ok, message))

    def report(self, event: NodeEvent) -> None:
        """Queue any Event on the Node and wake the reconciler to send it now."""
        self.events.record(event)
        self._wake()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("PublisherLoop already started")
        self._stop.clear()
        for name, target in (("watch", self._watch_loop), ("reconcile", self._reconcile_loop)):
            thread = threading.Thread(target=target, name=f"nodeagent-k8s-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads (the open watch is cut, not waited out)."""
        self._stop.set()
        self._wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            # Cut the watch again while waiting: it may have opened after the first cut.
            while thread.is_alive() and time.monotonic() < deadline:
                self.api.stop_watch()
                thread.join(0.05)
        self._threads = []

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @property
    def synced(self) -> bool:
        """The latest desired state is on the Node, written without error (``/readyz``)."""
        with self._cond:
            shared = self._shared
            return (shared.desired is not None and not shared.failing
                    and shared.synced_generation == shared.generation)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.synced:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def observed(self) -> NodeView | None:
        with self._cond:
            return self._shared.observed

    def _wake(self) -> None:
        with self._cond:
            self._shared.dirty = True
            self._cond.notify_all()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        return self._stop.wait(seconds)

    # --- watcher -----------------------------------------------------------------------------

    def _observe(self, node: NodeView | None, *, deleted: bool = False) -> None:
        with self._cond:
            current = self._shared.observed
            if deleted:
                self._shared.observed = None
            elif node is None or (current is not None and not _newer(node.resource_version, current.resource_version)):
                return
            else:
                self._shared.observed = node
            self._shared.dirty = True
            self._cond.notify_all()

    def _watch_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_max, rng=self.rng)
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    node = NodeView.from_api(self.api.get_node(self.node_name))
                    self.stats.relists += 1
                    self._observe(node)
                    resource_version = node.resource_version or "0"
                resource_version, healthy = self._watch_once(resource_version)
                if healthy:
                    backoff.reset()
                elif self._sleep(backoff.next_delay()):
                    return
            except ApiError as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:  # our resourceVersion was compacted away: list again
                    log.info("watch of node %s expired (410); re-listing", self.node_name)
                    resource_version = None
                    continue
                self._note_error(exc, "watch")
                if self._sleep(_delay(backoff, exc)):
                    return

    def _watch_once(self, resource_version: str) -> tuple[str, bool]:
        """One watch request. Returns the resourceVersion to resume from, and whether it was healthy."""
        timeout = max(1, int(jittered(self.config.watch_timeout, 1.0, self.rng)))
        started = time.monotonic()
        events = 0
        self.stats.watches += 1
        for event in self.api.watch_node(self.node_name, resource_version, timeout):
            if self._stop.is_set():
                break
            events += 1
            self.stats.watch_events += 1
            kind = event.get("type")
            obj = event.get("object") or {}
            resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
            if kind in ("ADDED", "MODIFIED"):
                self._observe(NodeView.from_api(obj))
            elif kind == "DELETED":
                log.warning("node %s was deleted; waiting for it to come back", self.node_name)
                self._observe(None, deleted=True)
        healthy = events > 0 or time.monotonic() - started >= self.config.min_watch_seconds
        return resource_version, healthy

    # --- reconciler --------------------------------------------------------------------------

    def _reconcile_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_max, rng=self.rng)
        next_resync = time.monotonic() + self.config.resync_period
        next_verify = time.monotonic()  # check the topology against the API server once at start
        while True:
            with self._cond:
                while not self._stop.is_set():
                    now = time.monotonic()
                    retry_at = self._shared.retry_at
                    if retry_at is not None:  # backing off: nothing but the retry time wakes us
                        if now >= retry_at:
                            self._shared.retry_at = None
                            break
                        wake = retry_at
                    elif self._shared.dirty or now >= next_resync:
                        break
                    else:
                        wake = next_resync
                    self._cond.wait(max(0.0, wake - now))
                if self._stop.is_set():
                    return
                self._shared.dirty = False
                desired, generation, observed = self._shared.desired, self._shared.generation, self._shared.observed
            now = time.monotonic()
            if now >= next_resync:
                next_resync = now + self.config.resync_period
            if desired is None or observed is None:
                continue  # nothing to publish yet, or the watcher has not seen the Node yet
            verify = now >= next_verify
            try:
                self._reconcile(desired, observed, verify=verify)
            except ApiError as exc:
                self._note_error(exc, "reconcile")
                delay = _delay(backoff, exc)
                with self._cond:
                    self._shared.failing = True
                    self._shared.retry_at = time.monotonic() + delay
                    self._cond.notify_all()
                continue
            backoff.reset()
            if verify:
                next_verify = time.monotonic() + self.config.topology_verify_period
            with self._cond:
                self._shared.failing = False
                if generation == self._shared.generation:
                    self._shared.synced_generation = generation
                self.stats.last_sync = time.time()
                self._cond.notify_all()

    def _reconcile(self, desired: DesiredState, observed: NodeView, *, verify: bool) -> None:
        self.stats.reconciles += 1
        node, wrote = self.publisher.sync_node(observed, desired)
        if wrote:
            self.stats.node_writes += 1
        if node is not observed:
            self._observe(node)
        before = self.publisher.writes
        self.publisher.sync_topology(desired, node.uid, verify=verify)
        self.stats.topology_writes += self.publisher.writes - before
        if self.events.pending and not self.events.flush(self.api, node.uid):
            log.debug("events left queued for the next reconcile")

    def _note_error(self, exc: ApiError, where: str) -> None:
        with self._cond:  # both threads report here
            self.stats.errors += 1
            self.stats.last_error = f"{where}: {exc}"
        log.warning("node %s %s: %s", self.node_name, where, exc)
