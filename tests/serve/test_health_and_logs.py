"""/healthz, /readyz and the JSON log format, from the daemon's status alone."""

from __future__ import annotations

import json
import logging
import time

from nodeagent.daemon.health import liveness, readiness
from nodeagent.daemon.jsonlog import JsonFormatter
from nodeagent.daemon.status import DaemonStatus
from nodeagent.httpserver import Request

REQUEST = Request("/", {}, {})


def test_liveness_fails_only_for_a_dead_worker_or_a_stuck_step() -> None:
    status = DaemonStatus(worker_alive=True)
    live = liveness(status, stuck_after_s=10)
    assert live(REQUEST).status == 200
    status.step_started("periodic")
    assert live(REQUEST).status == 200  # a step in progress is fine…
    status.update(step_started_at=time.monotonic() - 11)
    response = live(REQUEST)
    assert response.status == 503 and b"periodic" in response.body  # …one that never ends is not
    status.step_finished("periodic", complete=True)
    assert live(REQUEST).status == 200
    status.update(worker_alive=False)
    assert live(REQUEST).status == 503
    status.update(stopping=True)
    assert live(REQUEST).status == 200  # a worker that ended because we are stopping is not a failure


def test_readiness_needs_the_first_reconcile_and_a_synced_publisher() -> None:
    status = DaemonStatus(worker_alive=True)
    synced = {"ok": False}
    ready = readiness(status, lambda: (synced["ok"], "patch node node-a: 503 Service Unavailable"))
    status.update(waiting="Node node-a not seen on the API server yet")
    response = ready(REQUEST)
    assert response.status == 503
    assert b"first reconcile not done: Node node-a not seen" in response.body
    assert b"labels not published: patch node node-a: 503" in response.body
    status.step_started("start")
    status.step_finished("start", complete=True)
    status.update(waiting=None)
    assert ready(REQUEST).status == 503
    synced["ok"] = True
    assert ready(REQUEST).status == 200
    status.update(stopping=True)
    assert ready(REQUEST).body == b"shutting down\n"


def test_readiness_without_publishing_is_the_first_reconcile() -> None:
    status = DaemonStatus(worker_alive=True)
    ready = readiness(status, None)
    assert ready(REQUEST).status == 503
    status.step_started("start")
    status.step_finished("start", complete=False, error="OSError: boom")
    assert b"first reconcile not done: OSError: boom" in ready(REQUEST).body
    status.step_started("retry")
    status.step_finished("retry", complete=True)
    assert ready(REQUEST).status == 200


def test_json_lines_carry_extra_fields_and_exceptions() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("nodeagent.daemon", logging.INFO, __file__, 1, "reconcile (%s) done", ("uevent",), None)
    record.trigger = "uevent"
    record.duration_s = 0.012
    line = json.loads(formatter.format(record))
    assert line["msg"] == "reconcile (uevent) done" and line["level"] == "info"
    assert line["trigger"] == "uevent" and line["duration_s"] == 0.012
    assert line["time"].endswith("Z") and "T" in line["time"]
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(formatter.format(failed))
    assert "ValueError: bad" in entry["exc"]


def test_http_serves_only_once_the_worker_runs(host_trees, monkeypatch) -> None:
    """The start-up race: the first /healthz a probe can get an answer to already sees the worker
    alive (no 503 "reconcile worker is not running" in the first moments after start)."""
    import urllib.request

    from nodeagent.daemon.options import ServeOptions
    from nodeagent.daemon.service import Daemon
    from nodeagent.host import Host
    from nodeagent.metrics.server import MetricsServer

    seen: list[bool] = []
    real_start = MetricsServer.start

    def observed_start(server: MetricsServer) -> MetricsServer:
        seen.append(daemon.status.snapshot().worker_alive)
        return real_start(server)

    monkeypatch.setattr(MetricsServer, "start", observed_start)
    options = ServeOptions(listen="127.0.0.1:0", interval_s=3600, uevents="none", publish=False,
                           libvirt=False, nvml=False, kubevirt=False, read_only=True)
    daemon = Daemon(Host(str(host_trees("minimal"))), options)
    daemon.start()
    try:
        assert seen == [True]
        assert daemon.server is not None
        with urllib.request.urlopen(f"{daemon.server.url}/healthz", timeout=10) as response:
            assert (response.status, response.read()) == (200, b"ok\n")
    finally:
        daemon.request_stop()
        daemon.join_worker(10)
        daemon.close()
