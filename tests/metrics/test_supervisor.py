"""Collector isolation: a failing or hung collector costs only its own series."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from nodeagent.metrics.base import Supervisor
from tests.support.exposition import Exposition


class Fixed:
    timeout_s: float | None = None

    def __init__(self, name: str, value: float = 1.0) -> None:
        self.name = name
        self.value = value

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(f"test_{self.name}_value", "a value", value=self.value)


class Broken:
    name = "broken"
    timeout_s: float | None = None

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("test_broken_partial", "emitted before the failure", value=1)
        raise RuntimeError("the source fell over")


class Hanging:
    """Blocks in collect() until released, like a libvirt call to a stuck daemon."""

    name = "hanging"

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s: float | None = timeout_s
        self.release = threading.Event()
        self.calls = 0

    def collect(self) -> Iterator[Metric]:
        self.calls += 1
        self.release.wait(10)
        yield GaugeMetricFamily("test_hanging_value", "late", value=1)


def _scrape(supervisor: Supervisor) -> Exposition:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(supervisor)
    return Exposition(generate_latest(registry).decode())


def test_a_failing_collector_is_down_and_the_others_are_served() -> None:
    supervisor = Supervisor([Fixed("a", 3), Broken(), Fixed("b", 4)])
    exposition = _scrape(supervisor)
    assert exposition.value("test_a_value") == 3
    assert exposition.value("test_b_value") == 4
    assert exposition.get("test_broken_partial") == []  # half a collector's output is not served
    up = {s.labels["collector"]: s.value for s in exposition.get("nodeagent_collector_up")}
    assert up == {"a": 1, "broken": 0, "b": 1}
    assert supervisor.status["broken"].error == "RuntimeError: the source fell over"
    assert {s.labels["collector"] for s in exposition.get("nodeagent_collector_duration_seconds")} == {"a", "broken",
                                                                                                         "b"}


def test_a_collector_that_recovers_is_up_again() -> None:
    flaky = Fixed("flaky")
    original = flaky.collect
    failing = [True]

    def collect() -> Iterator[Metric]:
        if failing[0]:
            raise OSError("socket closed")
        return original()

    flaky.collect = collect  # type: ignore[method-assign]
    supervisor = Supervisor([flaky])
    assert _scrape(supervisor).value("nodeagent_collector_up", collector="flaky") == 0
    failing[0] = False
    exposition = _scrape(supervisor)
    assert exposition.value("nodeagent_collector_up", collector="flaky") == 1
    assert exposition.value("test_flaky_value") == 1
    assert (supervisor.status["flaky"].runs, supervisor.status["flaky"].failures) == (2, 1)


def test_a_hung_collector_times_out_and_is_not_started_twice() -> None:
    hanging = Hanging(timeout_s=0.2)
    supervisor = Supervisor([Fixed("fast"), hanging])
    started = time.perf_counter()
    first = _scrape(supervisor)
    assert time.perf_counter() - started < 2  # bounded by the timeout, not by the hang
    assert first.value("nodeagent_collector_up", collector="hanging") == 0
    assert first.value("test_fast_value") == 1
    assert "timed out" in (supervisor.status["hanging"].error or "")

    second = _scrape(supervisor)  # still hung: reported down at once, no second thread
    assert second.value("nodeagent_collector_up", collector="hanging") == 0
    assert hanging.calls == 1

    hanging.release.set()  # the daemon answers at last; the next scrape runs it afresh
    time.sleep(0.1)
    third = _scrape(supervisor)
    assert third.value("nodeagent_collector_up", collector="hanging") == 1
    assert third.value("test_hanging_value") == 1
    assert hanging.calls == 2


def test_threaded_collectors_run_concurrently() -> None:
    slow = [Hanging(timeout_s=5), Hanging(timeout_s=5)]
    slow[1].name = "hanging2"
    for collector in slow:
        threading.Timer(0.3, collector.release.set).start()
    started = time.perf_counter()
    exposition = _scrape(Supervisor(slow))
    assert time.perf_counter() - started < 0.55  # both waited 0.3 s at the same time, not 0.6 s in turn
    assert [s.value for s in exposition.get("nodeagent_collector_up")] == [1, 1]


def test_collector_names_must_be_unique() -> None:
    import pytest

    with pytest.raises(ValueError, match="unique"):
        Supervisor([Fixed("a"), Fixed("a")])


def test_empty_families_are_not_exposed() -> None:
    class Empty:
        name = "empty"
        timeout_s: float | None = None

        def collect(self) -> Iterator[Metric]:
            yield GaugeMetricFamily("test_nothing", "no samples", labels=["x"])

    exposition = _scrape(Supervisor([Empty()]))
    assert "test_nothing" not in exposition.text
    assert exposition.value("nodeagent_collector_up", collector="empty") == 1
