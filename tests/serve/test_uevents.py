"""uevent relevance, the spool source, the debouncer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from nodeagent.daemon.uevents import Debouncer, SpoolSource, UEvent
from tests.support.serve import drop_uevent
from tests.support.waiting import wait_for


def test_only_pci_and_cpu_topology_events_are_relevant() -> None:
    assert UEvent("bind", "pci", "/devices/x").relevant
    assert UEvent("unbind", "pci", "/devices/x").relevant
    assert UEvent("offline", "cpu", "/devices/system/cpu/cpu3").relevant
    assert not UEvent("change", "pci", "/devices/x").relevant
    assert not UEvent("add", "net", "/devices/virtual/net/veth0").relevant
    assert not UEvent("online", "memory", "/devices/system/memory/memory9").relevant


def test_the_spool_is_consumed_in_order_and_skips_half_written_files(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    drop_uevent(spool, "add pci /devices/pci0000:00/0000:00:02.0", "garbage line")
    drop_uevent(spool, "online cpu /devices/system/cpu/cpu7")
    (spool / ".partial").write_text("remove pci /devices/x\n")
    source = SpoolSource(str(spool))
    events = source.drain()
    assert [(e.action, e.subsystem) for e in events] == [("add", "pci"), ("online", "cpu")]
    assert all(e.source == "spool" for e in events)
    assert sorted(os.listdir(spool)) == [".partial"]
    assert source.drain() == []


def test_the_spool_thread_delivers_only_relevant_events(tmp_path: Path) -> None:
    got: list[UEvent] = []
    arrived = threading.Event()

    def sink(event: UEvent) -> None:
        got.append(event)
        arrived.set()

    source = SpoolSource(str(tmp_path / "spool"), poll_s=0.01)
    source.start(sink)
    try:
        drop_uevent(tmp_path / "spool", "change net /devices/virtual/net/lo", "unbind pci /devices/p/0000:17:00.0")
        assert arrived.wait(5)
        wait_for(lambda: not os.listdir(tmp_path / "spool"), 5, "the spool drained")
    finally:
        source.stop()
    assert [(e.action, e.subsystem) for e in got] == [("unbind", "pci")]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_fires_once_after_it_goes_quiet() -> None:
    clock = Clock()
    debouncer = Debouncer(1.0, 5.0, clock)
    assert debouncer.deadline is None and debouncer.take() == 0
    for _ in range(3):
        debouncer.add()
        clock.now += 0.5
    assert debouncer.take() == 0  # 0.5 s since the last: not quiet yet
    assert debouncer.deadline == 102.0  # last event at 101.0, plus 1 s of quiet
    clock.now = 102.0
    assert debouncer.take() == 3
    assert debouncer.take() == 0 and debouncer.deadline is None


def test_a_steady_trickle_still_fires_at_the_cap() -> None:
    clock = Clock()
    debouncer = Debouncer(1.0, 5.0, clock)
    fired_at = None
    for _ in range(20):  # an event every 0.5 s never leaves 1 s of quiet
        debouncer.add()
        clock.now += 0.5
        if debouncer.take():
            fired_at = clock.now
            break
    assert fired_at == 105.0
