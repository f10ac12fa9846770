"""Kernel device events that make the daemon look at the node again, and their debouncing.

What counts (anything else is ignored):

* ``pci``: ``add``, ``remove``, ``bind``, ``unbind`` — a GPU or NIC appears, goes, or changes
  driver (vfio-pci ↔ host driver);
* ``cpu``: ``online``, ``offline``, ``add``, ``remove`` — CPU hotplug changes the topology;
* ``mdev``: ``add``, ``remove`` — a vGPU instance (mediated device) is created or removed, by
  KubeVirt's virt-handler or anyone: the vGPU labels follow at once.

Hugepage pools, KSM and the governor raise no uevent: the periodic reconcile catches those.

Two sources feed the same sink:

* :class:`UdevSource` — pyudev on the kernel's uevent netlink socket. It listens to the
  *kernel* source, not udevd's: inside a container there is no ``/run/udev/control`` and libudev
  would silently subscribe to nothing, while the kernel's multicast reaches any process in the
  host network namespace (the DaemonSet runs with ``hostNetwork``), unprivileged included. The
  daemon only needs "something changed"; it re-reads sysfs itself after the debounce.
* :class:`SpoolSource` — a directory of event files, for fixture roots and tests: the events a
  fixture tree's kernel would have sent. Each file holds lines ``ACTION SUBSYSTEM DEVPATH``; it is
  consumed (deleted) once read. Write files under a name starting with ``.`` and rename them into
  place, so that a half-written file is never read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

RELEVANT: dict[str, frozenset[str]] = {
    "pci": frozenset({"add", "remove", "bind", "unbind"}),
    "cpu": frozenset({"online", "offline", "add", "remove"}),
    "mdev": frozenset({"add", "remove"}),
}


@dataclass(frozen=True)
class UEvent:
    action: str
    subsystem: str
    devpath: str
    source: str = "udev"

    @property
    def relevant(self) -> bool:
        return self.action in RELEVANT.get(self.subsystem, frozenset())


Sink = Callable[[UEvent], None]


class EventSource(Protocol):
    name: str

    def start(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...


class UdevSource:
    """Kernel uevents for the subsystems of :data:`RELEVANT`, through pyudev."""

    name = "udev"

    def __init__(self) -> None:
        self._observer: Any = None

    def start(self, sink: Sink) -> None:
        import pyudev

        context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(context, source="kernel")
        for subsystem in RELEVANT:
            monitor.filter_by(subsystem)

        def deliver(device: Any) -> None:
            event = UEvent(str(device.action or ""), str(device.subsystem or ""), str(device.device_path or ""))
            if event.relevant:
                sink(event)

        self._observer = pyudev.MonitorObserver(monitor, callback=deliver, name="nodeagent-udev")
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(Exception):  # already stopped, or stopping from its own thread
                self._observer.stop()
            self._observer = None


class SpoolSource:
    """Events read from files dropped into a directory (fixture roots, tests, replays)."""

    name = "spool"

    def __init__(self, directory: str, *, poll_s: float = 0.1) -> None:
        self.directory = directory
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), name="nodeagent-uevent-spool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self, sink: Sink) -> None:
        while not self._stop.wait(self.poll_s):
            for event in self.drain():
                if event.relevant:
                    sink(event)

    def drain(self) -> list[UEvent]:
        """Read and delete every complete event file, oldest name first."""
        events: list[UEvent] = []
        try:
            names = sorted(n for n in os.listdir(self.directory) if not n.startswith("."))
        except OSError:
            return events
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
                os.unlink(path)
            except OSError:
                continue
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3:
                    events.append(UEvent(parts[0], parts[1], parts[2], source="spool"))
                elif parts:
                    log.warning("uevent spool %s: ignoring %r (expected ACTION SUBSYSTEM DEVPATH)", name, line)
        return events


class Debouncer:
    """Collapses a burst of events into one trigger.

    Fires once the events have been quiet for ``quiet_s``, or ``cap_s`` after the first of the
    burst, whichever comes first: binding eight GPUs to vfio-pci is one re-inventory, and a
    device that never stops flapping is still looked at every ``cap_s``.
    """

    def __init__(self, quiet_s: float, cap_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_s = quiet_s
        self.cap_s = max(cap_s, quiet_s)
        self.clock = clock
        self.first: float | None = None
        self.last: float | None = None
        self.count = 0

    def add(self) -> None:
        now = self.clock()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1

    @property
    def deadline(self) -> float | None:
        """When the pending burst fires (None: nothing pending)."""
        if self.first is None or self.last is None:
            return None
        return min(self.last + self.quiet_s, self.first + self.cap_s)

    def take(self) -> int:
        """If the burst is due, reset and return how many events it held; else 0."""
        deadline = self.deadline
        if deadline is None or self.clock() < deadline:
            return 0
        count, self.first, self.last, self.count = self.count, None, None, 0
        return count
