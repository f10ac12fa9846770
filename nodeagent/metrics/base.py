"""Collectors, and the supervisor that runs them so that one failing collector costs only its own
series.

A nodeagent collector is any object with a ``name`` and a ``collect()`` that yields
prometheus_client metric families. The :class:`Supervisor` is the one object registered with
prometheus_client. On every scrape it

* runs the collectors that read live sources (``timeout_s`` set: libvirt, NVML) each in a thread
  of its own, concurrently, bounded by that timeout; and the inventory-derived ones inline;
* keeps a collector's series only when its ``collect()`` finished; a collector that raised or ran
  out of time contributes nothing but ``nodeagent_collector_up{collector} 0``;
* never starts a collector again while its previous run is still hung in a library call: the
  scrape reports it down at once instead of piling up threads;
* exports ``nodeagent_collector_up`` and ``nodeagent_collector_duration_seconds`` for each.

State changes (up → down → up) are logged once each, not on every scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nodeagent.inventory import Inventory
from nodeagent.metrics.exposition import has_samples
from nodeagent.metrics.prom import Collector as _PromCollector
from nodeagent.metrics.prom import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

InventoryProvider = Callable[[], Inventory]
"""Returns the current Inventory. The daemon refreshes it; collectors only read it."""


class NodeCollector(Protocol):
    name: str
    timeout_s: float | None  # None: run inline (cheap, inventory-derived)

    def collect(self) -> Iterable[Metric]: ...


class InventoryCollector:
    """A collector whose series are a pure function of the Inventory.

    The Inventory is frozen and the provider returns the same object until the daemon refreshes
    it, so the families are built once per Inventory and the same objects are returned until then
    (which also lets the text encoder reuse their rendering).
    """

    name = "inventory"
    timeout_s: float | None = None

    def __init__(self, inventory: InventoryProvider) -> None:
        self._inventory = inventory
        self._built_for: Inventory | None = None
        self._families: list[Metric] = []
        self._build_lock = threading.Lock()

    def families(self, inv: Inventory) -> Iterable[Metric]:
        raise NotImplementedError

    def collect(self) -> list[Metric]:
        inv = self._inventory()
        with self._build_lock:
            if self._built_for is not inv:
                self._families = list(self.families(inv))
                self._built_for = inv
            return self._families


@dataclass
class CollectorStatus:
    """How a collector's last run went (for logs, /readyz and tests)."""

    up: bool | None = None  # None: never ran
    duration_s: float = 0.0
    error: str | None = None
    runs: int = 0
    failures: int = 0


@dataclass
class _Run:
    collector: NodeCollector
    created: float = field(default_factory=time.perf_counter)  # the timeout counts from here
    started: float | None = None  # the duration counts from here
    done: threading.Event = field(default_factory=threading.Event)
    metrics: list[Metric] | None = None
    error: str | None = None
    finished: float | None = None

    def __call__(self) -> None:
        self.started = time.perf_counter()
        try:
            # Families without samples are dropped: absent means "nothing of that kind here".
            self.metrics = [m for m in self.collector.collect() if has_samples(m)]
        except Exception as exc:  # isolation: any failure is this collector's alone
            self.error = f"{type(exc).__name__}: {exc}"
            log.debug("collector %s failed", self.collector.name, exc_info=True)
        finally:
            self.finished = time.perf_counter()
            self.done.set()


class Supervisor(_PromCollector):
    """Runs a set of collectors with isolation, timeouts and self-metrics (see module docstring)."""

    def __init__(self, collectors: Sequence[NodeCollector]) -> None:
        names = [c.name for c in collectors]
        if len(set(names)) != len(names):
            raise ValueError(f"collector names must be unique, got {names}")
        self.collectors = list(collectors)
        self.status: dict[str, CollectorStatus] = {c.name: CollectorStatus() for c in collectors}
        self._hung: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        # Names are not known without collecting; an empty describe keeps registration free of side effects.
        return []

    def collect(self) -> Iterator[Metric]:
        runs: list[_Run] = []
        skipped: dict[str, str] = {}
        with self._lock:
            for collector in self.collectors:
                hung = self._hung.get(collector.name)
                if hung is not None and not hung.done.is_set():
                    skipped[collector.name] = "previous run still in progress"
                    continue
                self._hung.pop(collector.name, None)
                runs.append(_Run(collector))
        threaded = [r for r in runs if r.collector.timeout_s is not None]
        for run in threaded:
            threading.Thread(target=run, name=f"collector-{run.collector.name}", daemon=True).start()
        for run in runs:
            if run.collector.timeout_s is None:
                run()
        for run in threaded:
            remaining = run.created + (run.collector.timeout_s or 0) - time.perf_counter()
            run.done.wait(max(remaining, 0))

        up = GaugeMetricFamily("nodeagent_collector_up",
                               "1 when the collector's last scrape succeeded, 0 when it failed or timed out.",
                               labels=["collector"])
        duration = GaugeMetricFamily("nodeagent_collector_duration_seconds",
                                     "How long the collector took in this scrape.", labels=["collector"])
        for run in runs:
            name = run.collector.name
            if not run.done.is_set():
                with self._lock:
                    self._hung[name] = run
                self._record(name, False, time.perf_counter() - run.created,
                             f"timed out after {run.collector.timeout_s:g}s")
            else:
                assert run.finished is not None and run.started is not None
                self._record(name, run.error is None, run.finished - run.started, run.error)
            state = self.status[name]
            up.add_metric([name], 1.0 if state.up else 0.0)
            duration.add_metric([name], state.duration_s)
            if state.up and run.metrics:
                yield from run.metrics
        for name, reason in skipped.items():
            self._record(name, False, 0.0, reason)
            up.add_metric([name], 0.0)
            duration.add_metric([name], 0.0)
        yield up
        yield duration

    def _record(self, name: str, ok: bool, duration_s: float, error: str | None) -> None:
        with self._lock:
            state = self.status[name]
            if ok and state.up is False:
                log.info("collector %s is back up", name)
            elif not ok and state.up is not False:
                log.warning("collector %s is down: %s", name, error)
            state.up = ok
            state.duration_s = duration_s
            state.error = None if ok else error
            state.runs += 1
            state.failures += 0 if ok else 1
