"""The /metrics HTTP server: content negotiation, gzip, routes added by the daemon, errors."""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Iterator

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from nodeagent.metrics import MetricsServer, Request, Response, parse_listen
from tests.support.exposition import Exposition


class ManySeries:
    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("test_series", "enough samples to be worth compressing", labels=["i"])
        for i in range(200):
            family.add_metric([str(i)], i)
        yield family


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ManySeries())
    started = MetricsServer(registry, "127.0.0.1:0").start()
    try:
        yield started
    finally:
        started.shutdown()


def _get(server: MetricsServer, path: str, headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_metrics_in_text_format(server: MetricsServer) -> None:
    status, headers, body = _get(server, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert Exposition(body.decode()).value("test_series", i="199") == 199


def test_metrics_in_openmetrics_when_asked(server: MetricsServer) -> None:
    status, headers, body = _get(server, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_metrics_gzipped_when_accepted(server: MetricsServer) -> None:
    _, plain_headers, plain = _get(server, "/metrics")
    status, headers, body = _get(server, "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == plain
    assert len(body) < len(plain) / 3
    assert "content-encoding" not in plain_headers


def test_routes_added_later_are_served(server: MetricsServer) -> None:
    ready = {"ok": False}

    def readyz(_request: Request) -> Response:
        return Response(200, b"ok\n") if ready["ok"] else Response(503, b"inventory not discovered yet\n")

    server.add_route("/healthz", lambda _r: Response(200, b"ok\n"))
    server.add_route("/readyz", readyz)
    assert _get(server, "/healthz")[0] == 200
    assert _get(server, "/readyz")[:3:2] == (503, b"inventory not discovered yet\n")
    ready["ok"] = True
    assert _get(server, "/readyz")[0] == 200
    status, _, index = _get(server, "/")
    assert status == 200 and b'href="/readyz"' in index and b'href="/metrics"' in index


def test_unknown_path_and_failing_handler(server: MetricsServer) -> None:
    def broken(_request: Request) -> Response:
        raise RuntimeError("bug")

    server.add_route("/broken", broken)
    assert _get(server, "/nope")[0] == 404
    assert _get(server, "/broken")[0] == 500
    assert _get(server, "/metrics")[0] == 200  # the server survived


def test_head_has_no_body(server: MetricsServer) -> None:
    status, headers, body = _get(server, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_query_strings_reach_the_handler(server: MetricsServer) -> None:
    seen: list[Request] = []

    def echo(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    server.add_route("/echo", echo)
    _get(server, "/echo?verbose=1&x=a&x=b", {"X-Test": "yes"})
    assert seen[0].query == {"verbose": ["1"], "x": ["a", "b"]}
    assert seen[0].headers["x-test"] == "yes"


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    (":9464", ("0.0.0.0", 9464)),
    ("[::1]:80", ("::1", 80)),
    ("node.example:0", ("node.example", 0)),
])
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9464", "127.0.0.1", "127.0.0.1:http", "::1:9464", "1.2.3.4:70000"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(listen)


# --- connection storms and resets (issue 12 item 8) ---------------------------------------------


def test_accept_backlog_holds_a_hundred_pending_connections() -> None:
    """100 scrapers connecting while the server is busy all get their handshake (backlog 5 dropped SYNs)."""
    import select
    import socket

    from nodeagent.httpserver import ACCEPT_BACKLOG

    assert ACCEPT_BACKLOG >= 128
    from pathlib import Path

    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    pending = min(100, somaxconn - 1)
    server = MetricsServer(CollectorRegistry(), "127.0.0.1:0")  # listening, not yet accepting
    clients = []
    try:
        for _ in range(pending):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.port))
            clients.append(sock)
        # A full accept queue makes the kernel drop the SYN: such a connect never completes here.
        connected: set[socket.socket] = set()
        waiting = list(clients)
        for _ in range(50):
            _, writable, _ = select.select([], waiting, [], 0.1)
            connected.update(writable)
            waiting = [s for s in waiting if s not in connected]
            if not waiting:
                break
        assert len(connected) == pending
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in connected)
    finally:
        for sock in clients:
            sock.close()
        server._server.server_close()


def test_a_client_reset_is_one_debug_log_line_not_a_traceback(server: MetricsServer, capfd, caplog) -> None:
    import json
    import logging
    import socket
    import struct

    from nodeagent.daemon.jsonlog import JsonFormatter
    from tests.support.waiting import wait_for

    caplog.set_level(logging.DEBUG, logger="nodeagent.httpserver")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers not finished: the server is reading
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # linger 0: an RST, the server's read fails with ECONNRESET
    records = wait_for(lambda: [r for r in caplog.records if "went away" in r.getMessage()],
                       what="the reset logged")
    assert len(records) == 1 and records[0].levelno == logging.DEBUG
    line = JsonFormatter().format(records[0])
    assert "\n" not in line and json.loads(line)["error"]
    # The server still answers, and nothing went to stderr behind logging's back.
    status, _, _ = _get(server, "/metrics")
    assert status == 200
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_gzip_member_is_standard_gzip_with_either_deflate(deflate: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ISA-L where python-isal is installed (x86_64, aarch64 wheels), zlib elsewhere: the same format."""
    import builtins

    from nodeagent import httpserver

    real_import = builtins.__import__

    def without_isal(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("isal"):
            raise ImportError("no python-isal on this architecture")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    if deflate == "zlib":
        monkeypatch.setattr(builtins, "__import__", without_isal)
    else:
        pytest.importorskip("isal", reason="python-isal is a dependency on x86_64 and aarch64")
    httpserver._deflater.cache_clear()
    body = b"".join(b'nodeagent_vm_vcpu_seconds_total{name="vm-%d",vcpu="0"} %d\n' % (n, n * 7919)
                    for n in range(5000))
    try:
        member = httpserver.gzip_member(body)
        chosen = httpserver._deflater()
    finally:
        httpserver._deflater.cache_clear()
    assert gzip.decompress(member) == body and member[:3] == b"\x1f\x8b\x08"
    assert len(member) < len(body) / 4
    assert (chosen is not httpserver._zlib_gzip) == (deflate == "isal")
