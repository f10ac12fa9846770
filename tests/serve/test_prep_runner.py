"""The daemon's prep driver on a private fixture tree, in-process: back-off, Event de-duplication,
the SIGTERM clock. The apply itself is nodeagent.prep's (tested in tests/prep)."""

from __future__ import annotations

import errno
import math
import threading
from pathlib import Path

import pytest

from nodeagent.daemon.prep_runner import PrepRunner
from nodeagent.daemon.profiles import LoadedProfile, load_file
from nodeagent.discover import discover
from nodeagent.host import Host
from tests.support.faults import clear_faults, fail_writes

HUGE_1G_NODE1 = "/sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages"
PROFILES = Path(__file__).resolve().parents[2] / "daemonset" / "profiles"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(fresh_host_tree):
    root = fresh_host_tree("intel-2s-8gpu")
    host = Host(str(root))
    reports: list[tuple[bool, str]] = []
    clock = Clock()
    stop = threading.Event()
    runner = PrepRunner(host, lambda ok, message: reports.append((ok, message)), stop=stop, retry_base_s=60,
                        clock=clock)
    return root, host, reports, clock, stop, runner


def database() -> LoadedProfile:
    return load_file("database.yaml", str(PROFILES / "database.yaml"))


def test_a_failure_is_rolled_back_reported_and_retried_only_after_a_doubling_backoff(setup) -> None:
    root, host, reports, clock, _stop, runner = setup
    busy = fail_writes(host, "node1/hugepages/hugepages-1048576kB/nr_hugepages", errno.EBUSY)
    first = runner.run(database(), discover(host))
    assert first.state == "failed" and first.wrote
    assert reports == [(False, first.message)]
    assert "EBUSY" in first.message and "rolled back" in first.message and "next attempt in 60s" in first.message
    assert (root / HUGE_1G_NODE1.lstrip("/")).read_text().strip() == "64"  # nothing left half-done

    clock.now += 59
    with host.recording() as since:
        assert runner.run(database(), discover(host)).state == "backoff"
    assert since.stats.writes == 0 and len(reports) == 1  # no attempt, no Event

    clock.now += 2
    second = runner.run(database(), discover(host))
    assert second.state == "failed" and "next attempt in 120s" in second.message
    clock.now += 119
    assert runner.run(database(), discover(host)).state == "backoff"

    clear_faults(host, busy)  # the cause goes away; SIGHUP asks for a fresh attempt at once
    runner.reset_backoff()
    third = runner.run(database(), discover(host))
    assert third.state == "applied"
    assert reports[-1][0] is True and "profile database applied" in reports[-1][1]
    with host.recording() as since:
        assert runner.run(database(), discover(host)).state == "converged"  # and then it writes nothing
    assert since.writes == []


def test_a_changed_profile_is_tried_at_once_despite_the_backoff(setup, tmp_path: Path) -> None:
    _root, host, _reports, _clock, _stop, runner = setup
    fail_writes(host, "nr_hugepages", errno.EBUSY)
    assert runner.run(database(), discover(host)).state == "failed"
    edited = tmp_path / "database.yaml"
    edited.write_text((PROFILES / "database.yaml").read_text().replace("count: 64}", "count: 48}"))
    assert runner.run(load_file("database.yaml", str(edited)), discover(host)).state == "failed"  # tried again


def test_refusals_and_host_mismatches_are_reported_once(setup, tmp_path: Path) -> None:
    _root, host, reports, _clock, _stop, runner = setup
    refused = load_file("hpc.yaml", str(PROFILES / "hpc.yaml"))  # no housekeeping CPU on NUMA node 1 here
    with host.recording() as since:
        for _ in range(3):
            outcome = runner.run(refused, discover(host))
            assert outcome.state == "refused" and "no housekeeping CPU" in outcome.message
        assert len(reports) == 1 and reports[0][0] is False
        misfit = tmp_path / "misfit.yaml"
        misfit.write_text((PROFILES / "database.yaml").read_text().replace("count: 64}", "count: 64, numaNode: 7}"))
        for _ in range(2):
            assert runner.run(load_file("misfit.yaml", str(misfit)), discover(host)).state == "invalid"
        assert len(reports) == 2 and "does not fit this node" in reports[1][1]
    assert since.stats.writes == 0


def test_once_stopping_no_apply_starts_and_allocation_retries_end(setup) -> None:
    _root, host, reports, _clock, stop, runner = setup
    assert runner._clock() < math.inf
    stop.set()
    assert runner._clock() == math.inf  # a hugepage retry loop sees its deadline passed
    with host.recording() as since:
        assert runner.run(database(), discover(host)).state == "stopped"
    assert since.stats.writes == 0 and reports == []
