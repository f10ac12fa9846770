"""The /metrics HTTP server: content negotiation, gzip, routes added by the daemon, errors."""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Iterator

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from nodeagent.metrics import MetricsServer, Request, Response, parse_listen
from tests.metrics.conftest import Exposition


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
