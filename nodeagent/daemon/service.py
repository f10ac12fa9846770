"""The daemon: its threads, its wake-ups, and how it starts and stops.

Threads:

* **main** — blocks SIGTERM/SIGINT/SIGHUP before any other thread exists (so every thread
  inherits the mask) and takes them with ``sigtimedwait``: no Python signal handler ever runs in
  the middle of a reconcile, and no lock can be re-entered from one;
* **reconcile worker** — runs one step at a time (:class:`~nodeagent.daemon.reconcile.Reconciler`)
  when something asks for it: start, the jittered period, a debounced uevent burst, a profile
  reload, a change of the Node's labels (a profile may now select it), or a retry;
* the metrics HTTP server, the PublisherLoop's watcher and reconciler, the uevent source.

Stopping (SIGTERM/SIGINT): ``/readyz`` turns 503, the worker finishes the step it is in (an apply
runs to its end, its hugepage retries cut short) and starts no other, queued Events get a few
seconds to be sent, then everything is closed and the process exits 0. A second signal only logs.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import threading
import time
from typing import TYPE_CHECKING

from nodeagent.backoff import Backoff
from nodeagent.daemon.health import liveness, not_ready_reasons, readiness
from nodeagent.daemon.heap import release_free_heap
from nodeagent.daemon.options import ServeOptions
from nodeagent.daemon.prep_runner import PrepRunner
from nodeagent.daemon.profiles import ProfileStore
from nodeagent.daemon.reconcile import Reconciler
from nodeagent.daemon.status import DaemonStatus, PrepStatus
from nodeagent.daemon.uevents import Debouncer, EventSource, SpoolSource, UdevSource, UEvent
from nodeagent.daemon.workloads import WorkloadClassesFile
from nodeagent.host import Host
from nodeagent.labels import label_config_for

if TYPE_CHECKING:
    from nodeagent.k8s.loop import PublisherLoop
    from nodeagent.metrics import MetricsServer, NodeMetrics

log = logging.getLogger(__name__)

TICK_S = 1.0  # how often the worker looks at the Node's labels and the profile directory when idle
SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class Daemon:
    def __init__(self, host: Host, options: ServeOptions, *, publisher: PublisherLoop | None = None,
                 rng: random.Random | None = None) -> None:
        self.host = host
        self.options = options
        self.rng = rng or random.Random()
        self.stop_event = threading.Event()
        self.status = DaemonStatus()
        self.label_config = label_config_for(options.nfd_labels, prefix=options.label_prefix,
                                         recipe_compatible=options.recipe_labels)
        self.store = ProfileStore(options.profiles_dir)
        self.classes = WorkloadClassesFile(options.workload_classes)  # a bad file: OptionsError, exit 2
        self.publisher = publisher
        self.prep: PrepRunner | None = None
        if not options.read_only:
            self.prep = PrepRunner(host, self._report_prep, stop=self.stop_event, retry_base_s=options.interval_s)
        self.reconciler = Reconciler(host, options, store=self.store, status=self.status, stop=self.stop_event,
                                     label_config=self.label_config, publisher=publisher, prep=self.prep,
                                     notify=self._notify, workloads_base=self.classes.table)
        self.metrics: NodeMetrics | None = None
        self.server: MetricsServer | None = None
        self.sources: list[EventSource] = []
        self._cond = threading.Condition()
        self._debouncer = Debouncer(options.debounce_s, options.debounce_cap_s)
        self._reload_requested = False
        self._due = 0.0
        self._due_reason = "start"
        # an incomplete or failed step is retried after 1 s, doubling up to one reconcile interval
        self._retry = Backoff(base=1.0, cap=options.interval_s, jitter=0.0)
        self._next_profile_poll = 0.0
        self._worker: threading.Thread | None = None
        self._started_up = False  # the first reconcile step is over: start-up's garbage was handed back

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load profiles, take the first inventory, then start serving, publishing and listening."""
        result = self.store.reload()
        self._note_profile_errors(result.errors)
        if self.options.profiles_dir:
            log.info("loaded %d profile(s) from %s", len(self.store.profiles), self.options.profiles_dir,
                     extra={"profiles": [p.file for p in self.store.profiles]})
        else:
            log.info("no --profiles directory: observing only")
        self.reconciler.discover()
        self._build_metrics()  # binds the port: a clash fails here, before anything runs
        if self.publisher is not None:
            self.publisher.start()
        self._start_sources()
        self._next_profile_poll = time.monotonic() + self.options.profiles_poll_s
        self._worker = threading.Thread(target=self._work, name="nodeagent-reconcile", daemon=True)
        self.status.update(worker_alive=True)
        self._worker.start()
        # HTTP last: the first /healthz must see the worker running. A probe that connects earlier
        # waits in the listen backlog instead of reading "reconcile worker is not running".
        self._serve_http()

    def _serve_http(self) -> None:
        assert self.server is not None
        self.server.start()
        log.info("serving /metrics, /healthz, /readyz on %s", self.server.url,
                 extra={"url": self.server.url, "port": self.server.port})

    def _build_metrics(self) -> None:
        from nodeagent.daemon.collector import DaemonCollector
        from nodeagent.metrics import MetricsOptions, MetricsServer, build_metrics

        options = MetricsOptions(libvirt=self.options.libvirt, libvirt_uris=list(self.options.libvirt_uris) or None,
                                 kubevirt=self.options.kubevirt, nvml=self.options.nvml,
                                 vm_metrics=self.options.vm_metrics, workloads=self.reconciler.current_workloads)
        self.metrics = build_metrics(self.reconciler.current_inventory, self.host, options,
                                     extra=[DaemonCollector(self.status, self.ready)])
        self.server = MetricsServer(self.metrics.exposition, self.options.listen)
        self.server.add_route("/healthz", liveness(self.status, self.options.stuck_after_s))
        self.server.add_route("/readyz", readiness(self.status, self._synced if self.publisher else None))

    def _start_sources(self) -> None:
        mode = self.options.uevents
        live = self.host.is_live
        source: EventSource | None = None
        if self.options.spool_dir:
            source = SpoolSource(self.options.spool_dir)
        elif mode == "udev" or (mode == "auto" and live):
            source = UdevSource()
        if source is None:
            log.info("no uevent source (--uevents %s, live sources %s): periodic reconcile only", mode,
                     "on" if live else "off")
            return
        try:
            source.start(self._on_uevent)
        except Exception as exc:  # libudev missing, netlink refused: degrade to periodic reconcile
            log.warning("uevent source %s unavailable: %s; periodic reconcile only", source.name, exc)
            return
        self.sources.append(source)
        log.info("listening for PCI and CPU uevents (%s)", source.name)

    @property
    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def request_reload(self) -> None:
        with self._cond:
            self._reload_requested = True
            self._cond.notify_all()

    def request_stop(self) -> None:
        self.status.update(stopping=True)
        self.stop_event.set()
        with self._cond:
            self._cond.notify_all()

    def join_worker(self, timeout: float | None = None) -> bool:
        if self._worker is not None:
            self._worker.join(timeout)
        return not self.worker_alive

    def close(self) -> None:
        """After the worker stopped: flush Events, stop the publisher, the sources and the server."""
        for source in self.sources:
            source.stop()
        if self.publisher is not None:
            deadline = time.monotonic() + self.options.shutdown_flush_s
            while self.publisher.events.pending and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.publisher.events.pending:
                log.warning("%d Event(s) not sent before exit", self.publisher.events.pending)
            self.publisher.stop()
            self.publisher.api.close()
        if self.server is not None:
            self.server.shutdown()
        if self.metrics is not None:
            self.metrics.close()

    # --- readiness ---------------------------------------------------------------------------

    def _synced(self) -> tuple[bool, str]:
        assert self.publisher is not None
        if self.publisher.synced:
            return True, ""
        stats = self.publisher.stats
        return False, stats.last_error or "waiting for the first write to the API server"

    def ready(self) -> bool:
        return not not_ready_reasons(self.status, self._synced if self.publisher else None)

    # --- events from elsewhere ---------------------------------------------------------------

    def _on_uevent(self, event: UEvent) -> None:
        log.debug("uevent %s %s %s", event.action, event.subsystem, event.devpath)
        self.status.count_uevent()
        with self._cond:
            self._debouncer.add()
            self._cond.notify_all()

    def _report_prep(self, ok: bool, message: str) -> None:
        if self.publisher is not None:
            self.publisher.report_prep(ok, message)

    def _notify(self, reason: str, message: str) -> None:
        """A Warning Event on the Node (conflicting or invalid profiles)."""
        if self.publisher is None:
            return
        from nodeagent.k8s.events import NodeEvent

        self.publisher.report(NodeEvent(reason, message, "Warning"))

    def _note_profile_errors(self, errors: dict[str, str]) -> None:
        previous = self.status.snapshot().profile_errors
        self.status.update(profile_errors=dict(errors))
        for name, error in errors.items():
            if previous.get(name) != error:
                log.error("profile %s: %s", name, error, extra={"file": name})
                self._notify("ProfileInvalid", f"{name}: {error}")

    # --- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                trigger = self._next_trigger()
                if trigger is None:
                    return
                self._run_step(trigger)
        except BaseException:
            log.exception("reconcile worker died")
            raise
        finally:
            self.status.update(worker_alive=False)

    def _next_trigger(self) -> str | None:
        """Block until there is a reason to reconcile (or the daemon stops: None)."""
        with self._cond:
            while True:
                if self.stop_event.is_set():
                    return None
                now = time.monotonic()
                if self._reload_requested:
                    self._reload_requested = False
                    return "reload"
                if self._debouncer.take():
                    return "uevent"
                if now >= self._due:
                    return self._due_reason
                key = self.reconciler.selection_key()
                if key is not None and self.reconciler.last_selection_key is not None \
                        and key != self.reconciler.last_selection_key:
                    return "node-labels"
                if self.options.profiles_poll_s > 0 and now >= self._next_profile_poll:
                    self._next_profile_poll = now + self.options.profiles_poll_s
                    if self.store.changed() or self.classes.changed():
                        return "profiles-changed"
                wake = min(self._due, self._debouncer.deadline or math.inf, now + TICK_S)
                self._cond.wait(max(0.0, wake - now))

    def _run_step(self, trigger: str) -> None:
        self.status.step_started(trigger)
        started = time.monotonic()
        try:
            if trigger in ("reload", "profiles-changed"):
                self._reload(explicit=trigger == "reload")
            complete = self.reconciler.step(trigger)
        except Exception as exc:  # a bug or an unforeseen host error: log, count, try again later
            log.exception("reconcile (%s) failed", trigger, extra={"trigger": trigger})
            self.status.step_finished(trigger, complete=False, error=f"{type(exc).__name__}: {exc}")
            self._schedule_retry()
            return
        self.status.step_finished(trigger, complete=complete)
        if complete:
            self._retry.reset()
            self._due = time.monotonic() + self._jittered(self.options.interval_s)
            self._due_reason = "periodic"
        else:
            self._schedule_retry()
        if not self._started_up:
            self._started_up = True
            release_free_heap()
        snap = self.status.snapshot()
        quiet = (PrepStatus.CONVERGED, PrepStatus.NONE, PrepStatus.READ_ONLY)
        level = logging.DEBUG if trigger == "periodic" and snap.prep_state in quiet else logging.INFO
        log.log(level, "reconcile (%s) %s in %.3fs", trigger, "done" if complete else "incomplete",
                time.monotonic() - started,
                extra={"trigger": trigger, "complete": complete, "duration_s": round(time.monotonic() - started, 4),
                       "profile": snap.profile, "prep": snap.prep_state})

    def _schedule_retry(self) -> None:
        self._due = time.monotonic() + self._retry.next_delay()
        self._due_reason = "retry"

    def _reload(self, *, explicit: bool) -> None:
        result = self.store.reload()
        self._note_profile_errors(result.errors)
        error = self.classes.reload()
        if error is not None:
            log.error("%s", error, extra={"file": self.options.workload_classes})
            self._notify("WorkloadClassesInvalid", error)
        self.reconciler.workloads_base = self.classes.table
        if explicit and self.prep is not None:
            self.prep.reset_backoff()
        log.info("profiles reloaded (%s): %s", "SIGHUP" if explicit else "directory changed",
                 "changed" if result.changed else "unchanged",
                 extra={"profiles": [p.file for p in self.store.profiles], "errors": result.errors})

    def _jittered(self, seconds: float) -> float:
        jitter = self.options.jitter
        return seconds * (1 - jitter + 2 * jitter * self.rng.random())


def run(host: Host, options: ServeOptions) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the profiles. Returns the exit code."""
    from nodeagent.daemon.cluster import open_publisher

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # before any thread exists
    try:
        label_config = label_config_for(options.nfd_labels, prefix=options.label_prefix,
                                         recipe_compatible=options.recipe_labels)
        publisher = open_publisher(options, label_config)
        daemon = Daemon(host, options, publisher=publisher)
        try:
            daemon.start()
        except BaseException:
            daemon.request_stop()
            daemon.join_worker(5)
            daemon.close()
            raise
        code = _wait_for_signal(daemon)
        _shutdown(daemon)
        return code
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _wait_for_signal(daemon: Daemon) -> int:
    while True:
        info = signal.sigtimedwait(SIGNALS, 1.0)
        if info is None:
            if not daemon.worker_alive:
                log.error("the reconcile worker stopped unexpectedly; exiting")
                return 1
            continue
        if info.si_signo == signal.SIGHUP:
            log.info("SIGHUP: reloading profiles")
            daemon.request_reload()
            continue
        log.info("%s: finishing the current step, then exiting", signal.Signals(info.si_signo).name,
                 extra={"step": daemon.status.snapshot().step_trigger})
        return 0


def _shutdown(daemon: Daemon) -> None:
    daemon.request_stop()
    while not daemon.join_worker(0.2):
        info = signal.sigtimedwait(SIGNALS, 0)
        if info is not None and info.si_signo != signal.SIGHUP:
            log.warning("already stopping: finishing the current step first (SIGKILL would abort it mid-change)",
                        extra={"step": daemon.status.snapshot().step_trigger})
    daemon.close()
    log.info("stopped")
