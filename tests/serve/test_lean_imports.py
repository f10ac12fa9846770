"""What a running ``nodeagent serve`` imports, as a subprocess on a fixture root (observe only, no
cluster): libraries or parts of them that it never uses stay unimported, so they cost no resident
memory (bench/serve), and the lazily imported parts still load and work when they are needed."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.support.serve import ServeProcess

FIXTURE = "intel-2s-8gpu"

# Imported by prometheus_client's package __init__ (push gateway client, WSGI server, instrumentation
# classes, default collectors), by the IDNA codec of HTTPServer's getfqdn, nodeagent's prep and the
# profile schema (no --profiles: nothing to apply).
NEVER_IN_OBSERVE_ONLY = {"prometheus_client.exposition", "prometheus_client.metrics", "prometheus_client.gc_collector",
                         "prometheus_client.platform_collector", "urllib.request", "wsgiref.simple_server",
                         "encodings.idna", "nodeagent.prep", "nodeagent.prep.plan", "nodeagent.prep.apply",
                         "nodeagent.profile"}


def _serve(serve_factory: Callable[..., ServeProcess], root: Path, report: Path) -> ServeProcess:
    serve = serve_factory(root, "--no-publish", "--uevents", "none",
                          module="tests.serve.report_modules", env={"NODEAGENT_TEST_MODULES": str(report)})
    serve.wait_serving()
    serve.wait_ready()
    return serve


def test_observe_only_serve_leaves_unused_modules_unimported(host_trees, serve_factory, tmp_path):
    report = tmp_path / "modules.json"
    serve = _serve(serve_factory, host_trees(FIXTURE), report)
    for _ in range(2):
        status, text = serve.get("/metrics")
        assert status == 200
        assert "nodeagent_info{" in text and "nodeagent_reconciles_total{" in text
        assert "process_cpu_seconds_total" in text
    assert serve.stop() == 0
    modules = set(json.loads(report.read_text()))
    assert {"prometheus_client.metrics_core", "nodeagent.metrics.build", "nodeagent.daemon.service"} <= modules
    assert sorted(NEVER_IN_OBSERVE_ONLY & modules) == []


def test_an_openmetrics_scrape_loads_prometheus_client_encoder(host_trees, serve_factory, tmp_path):
    report = tmp_path / "modules.json"
    serve = _serve(serve_factory, host_trees(FIXTURE), report)
    request = urllib.request.Request(serve.url + "/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as response:
        content_type = response.headers["Content-Type"]
        body = response.read().decode()
    assert content_type.startswith("application/openmetrics-text")
    assert "# TYPE nodeagent_info gauge" in body and body.endswith("# EOF\n")
    assert serve.stop() == 0
    assert "prometheus_client.exposition" in set(json.loads(report.read_text()))
