"""A real Prometheus on 127.0.0.1 scrapes nodeagent's /metrics while a real libvirt guest runs;
the series are read back through Prometheus' HTTP API."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.metrics import MetricsOptions, MetricsServer, build_metrics
from tests.support.libvirt import Guest, Libvirtd
from tests.support.prometheus import PrometheusServer

pytestmark = [pytest.mark.prometheus, pytest.mark.libvirt, pytest.mark.slow]


@pytest.fixture
def nodeagent_endpoint(libvirtd: Libvirtd, guest: Guest) -> Iterator[MetricsServer]:
    host = Host("/")
    inventory = discover(host)
    node_metrics = build_metrics(lambda: inventory, host, MetricsOptions(libvirt_uris=[libvirtd.uri], nvml=False))
    server = MetricsServer(node_metrics.exposition, "127.0.0.1:0").start()  # as `serve` wires it
    try:
        yield server
    finally:
        server.shutdown()
        node_metrics.close()


def test_prometheus_scrapes_the_real_guest(nodeagent_endpoint: MetricsServer, guest: Guest,
                                           prometheus_server: Callable[[dict[str, str]], PrometheusServer]) -> None:
    prom = prometheus_server({"nodeagent": f"127.0.0.1:{nodeagent_endpoint.port}"})
    (info,) = prom.wait_for(f'nodeagent_vm_info{{domain="{guest.name}"}}')
    labels = info["metric"]
    assert (labels["namespace"], labels["name"], labels["uuid"]) == (guest.namespace, guest.vm_name,
                                                                     guest.uuid.lower())
    assert labels["job"] == "nodeagent"

    (memory,) = prom.query(f'nodeagent_vm_memory_bytes{{domain="{guest.name}",state="actual"}}')
    assert float(memory["value"][1]) == 64 * 2**20
    # the guest burns CPU between scrapes: Prometheus sees the counter move
    (rate,) = prom.wait_for(f'rate(nodeagent_vm_cpu_seconds_total{{domain="{guest.name}"}}[10s]) > 0')
    assert float(rate["value"][1]) > 0
    (aligned,) = prom.query(f'nodeagent_vm_numa_aligned{{domain="{guest.name}"}}')
    assert aligned["value"][1] == "1"
    numa = prom.query(f'sum(nodeagent_vm_numa_memory_bytes{{domain="{guest.name}"}})')
    assert float(numa[0]["value"][1]) > 0

    collectors = {r["metric"]["collector"]: r["value"][1] for r in prom.query("nodeagent_collector_up")}
    assert collectors == {"capacity": "1", "node": "1", "checks": "1", "gpu": "1", "vgpu": "1", "vm": "1"}
    cpus = prom.query("sum(nodeagent_numa_node_cpus)")
    assert int(float(cpus[0]["value"][1])) == len(discover(Host("/")).cpu.online)

    (target,) = prom.api("targets")["activeTargets"]
    assert target["health"] == "up" and target["lastError"] == ""


def test_served_exposition_passes_promtool(nodeagent_endpoint: MetricsServer, guest: Guest) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    with urllib.request.urlopen(f"{nodeagent_endpoint.url}/metrics", timeout=10) as response:
        body = response.read().decode()
    assert f'domain="{guest.name}"' in body
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
