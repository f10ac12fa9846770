#!/usr/bin/env python3
"""Scrape latency of nodeagent's /metrics against node_exporter's, on the same machine, in one run.

nodeagent serves the intel-2s-8gpu fixture inventory (224 CPUs, 2 NUMA nodes, 8 H100s + the BMC's
VGA) plus libvirt domains, from its own process, like ``nodeagent serve`` would. node_exporter
(Debian's ``prometheus-node-exporter``, default collectors) runs on another loopback port. The two
are scraped alternately (the order flips every round), over kept-alive connections, with the
headers Prometheus sends (OpenMetrics preferred, gzip accepted); each sample is the time from
sending the request to the last byte of the body.

Scenarios (``--scenario``):

* ``test-driver``: 100 running domains on libvirt's ``test:///default`` driver, KubeVirt-named,
  some pinned, four holding passthrough GPUs. The test driver reports only the ``state`` stats
  group, so this measures the bulk call, the per-domain bookkeeping and the XML cache.
* ``qemu-like``: 100 domains whose stats records are a real QEMU guest's (2 vCPUs, a disk, a
  NIC, balloon), served from memory: the series volume of 100 real VMs without 100 real VMs.

Run from the repository root: ``python bench/metrics/scrape_latency.py`` (needs libvirt-python,
prometheus-node-exporter; see bench/metrics/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# What Prometheus 2.x sends on each scrape.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}

# One getAllDomainStats record of a running 2-vCPU QEMU guest (libvirt 9.0), as in tests/metrics.
QEMU_STATS: dict[str, Any] = {
    "state.state": 1, "state.reason": 1, "cpu.time": 1747148000, "cpu.user": 56999000, "cpu.system": 1690148000,
    "balloon.current": 4194304, "balloon.maximum": 4194304, "balloon.available": 4015000,
    "balloon.unused": 3600000, "balloon.usable": 3700000, "balloon.disk_caches": 120000, "balloon.rss": 1039388,
    "vcpu.current": 2, "vcpu.maximum": 2,
    "vcpu.0.state": 1, "vcpu.0.time": 1580000000, "vcpu.0.wait": 0, "vcpu.0.delay": 8450422,
    "vcpu.1.state": 1, "vcpu.1.time": 1280000000, "vcpu.1.wait": 0, "vcpu.1.delay": 7450422,
    "net.count": 1, "net.0.name": "tap0", "net.0.rx.bytes": 90, "net.0.rx.pkts": 1, "net.0.rx.errs": 0,
    "net.0.rx.drop": 0, "net.0.tx.bytes": 4000, "net.0.tx.pkts": 20, "net.0.tx.errs": 0, "net.0.tx.drop": 0,
    "block.count": 1, "block.0.name": "vda", "block.0.path": "/var/run/kubevirt/disk.img",
    "block.0.rd.reqs": 100, "block.0.rd.bytes": 51200, "block.0.rd.times": 146517, "block.0.wr.reqs": 10,
    "block.0.wr.bytes": 4096, "block.0.wr.times": 30000,
}


# --- the nodeagent process ------------------------------------------------------------------


def _start_test_domains(count: int, gpus: list[str], cpus: list[int]) -> Any:
    """Start ``count`` domains; returns the connection, which must stay open: the test driver's
    state lives only as long as some connection to it does."""
    import libvirt

    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    conn = libvirt.open("test:///default")
    for i in range(count):
        pin = f"<cputune><vcpupin vcpu='0' cpuset='{cpus[2 * i % len(cpus)]}'/></cputune>" if i % 2 else ""
        hostdev = ""
        if i < len(gpus):
            bus, rest = gpus[i].split(":")[1:]
            slot, fn = rest.split(".")
            hostdev = (f"<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' "
                       f"bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/></source></hostdev>")
        xml = (f"<domain type='test'><name>tenant-{i % 10}_vm-{i}</name><memory unit='MiB'>4096</memory>"
               f"<vcpu placement='static'>2</vcpu><metadata><kubevirt xmlns='http://kubevirt.io'><uid>{i}</uid>"
               f"</kubevirt></metadata><os><type>hvm</type></os>{pin}<devices>{hostdev}</devices></domain>")
        conn.defineXML(xml).create()
    return conn


@dataclass
class _QemuLike:
    """Domains with real QEMU stats records, parsed on every read as LibvirtSource does."""

    records: list[tuple[str, str, int, dict[str, Any], Any]]
    name: str = "qemu-like"

    def present(self) -> bool:
        return True

    def domains(self) -> list[Any]:
        from nodeagent.sources.libvirt_source import parse_domain_stats

        return [parse_domain_stats(name, uuid, dom_id, raw, xml=xml, driver="QEMU")
                for name, uuid, dom_id, raw, xml in self.records]


def _serve(scenario: str, domains: int, ready: Any) -> None:
    """Child process: build the fixture inventory, the domains and nodeagent's server; serve forever."""
    from fixtures.hostgen import build_host
    from nodeagent.discover import discover
    from nodeagent.host import Host
    from nodeagent.metrics import MetricsOptions, MetricsServer, build_metrics
    from nodeagent.metrics.vm import VmCollector
    from nodeagent.sources.libvirt_source import DomainXml, LibvirtSource

    root = build_host("intel-2s-8gpu", Path(tempfile.mkdtemp(prefix="nodeagent-bench-")))
    host = Host(str(root))
    inventory = discover(host)
    passthrough = [g.address for g in inventory.gpus if g.passthrough_ready]
    options = MetricsOptions(live=False)  # a fixture root: no NVML, no /proc of QEMU processes
    if scenario == "test-driver":
        keep = _start_test_domains(domains, passthrough, inventory.numa[0].cpus)  # noqa: F841 - held open
        node_metrics = build_metrics(lambda: inventory, host, options, libvirt=[LibvirtSource("test:///default")])
    else:
        records = []
        for i in range(domains):
            xml = DomainXml(vcpus=2, vcpu_cpuset=None, vcpupins={0: [2 + i % 100]}, hugepages=i % 2 == 0,
                            hostdev_pci=passthrough[i:i + 1], kubevirt=True)
            records.append((f"tenant-{i % 10}_vm-{i}", f"00000000-0000-0000-0000-{i:012d}", i + 1, QEMU_STATS, xml))
        source = _QemuLike(records)
        vm = VmCollector(lambda: [source], lambda: inventory)  # type: ignore[list-item]
        node_metrics = build_metrics(lambda: inventory, host, options, extra=[vm])
    server = MetricsServer(node_metrics.exposition, "127.0.0.1:0")
    ready.send(server.port)
    server.serve_forever()


# --- measuring ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Target:
    name: str
    port: int
    conn: http.client.HTTPConnection | None = None

    def scrape(self) -> tuple[float, bytes, dict[str, str]]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        started = time.perf_counter()
        self.conn.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}")
        return elapsed, body, {k.lower(): v for k, v in response.getheaders()}


def _wait(target: Target, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            target.scrape()
            return
        except OSError:
            target.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _summary(name: str, times: list[float], body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
    lines = [line for line in raw.decode().splitlines() if line and not line.startswith("#")]
    ms = [t * 1000 for t in times]
    return {"target": name, "p50_ms": statistics.median(ms), "p90_ms": _percentile(ms, 90),
            "p99_ms": _percentile(ms, 99), "mean_ms": statistics.fmean(ms), "max_ms": max(ms), "scrapes": len(ms),
            "samples": len(lines), "body_bytes": len(raw), "wire_bytes": len(body),
            "content_type": headers.get("content-type", "")}


def run(scenario: str, domains: int, rounds: int, warmup: int, node_exporter: str) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    agent = ctx.Process(target=_serve, args=(scenario, domains, child), daemon=True)
    agent.start()
    ne_port = _free_port()
    exporter = subprocess.Popen([node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not parent.poll(120):
            raise RuntimeError("nodeagent did not start")
        targets = [Target("nodeagent", parent.recv()), Target("node_exporter", ne_port)]
        for target in targets:
            _wait(target)
        times: dict[str, list[float]] = {t.name: [] for t in targets}
        last: dict[str, tuple[bytes, dict[str, str]]] = {}
        for round_no in range(warmup + rounds):
            order = targets if round_no % 2 == 0 else targets[::-1]
            for target in order:
                elapsed, body, headers = target.scrape()
                if round_no >= warmup:
                    times[target.name].append(elapsed)
                last[target.name] = (body, headers)
        return [_summary(t.name, times[t.name], *last[t.name]) for t in targets]
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
        agent.terminate()
        agent.join(timeout=10)


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter") or ""
    version = subprocess.run([exporter, "--version"], capture_output=True, text=True, check=False)
    from importlib.metadata import version as package_version

    import libvirt

    libvirt_version = libvirt.getVersion()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{model} x{os.cpu_count()}", "kernel": platform.release(),
        "python": platform.python_version(),
        "libvirt": f"{libvirt_version // 1000000}.{libvirt_version // 1000 % 1000}.{libvirt_version % 1000}",
        "prometheus_client": package_version("prometheus-client"),
        "node_exporter": (version.stdout or version.stderr).splitlines()[0] if exporter else "missing",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["test-driver", "qemu-like", "both"], default="both")
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=500, help="measured scrapes of each target")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args()
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exporter is None:
        print("prometheus-node-exporter is not installed", file=sys.stderr)
        return 2
    scenarios = ["test-driver", "qemu-like"] if args.scenario == "both" else [args.scenario]
    info = machine()
    results = {s: run(s, args.domains, args.rounds, args.warmup, exporter) for s in scenarios}
    if args.json:
        print(json.dumps({"machine": info, "results": results}, indent=2))
        return 0
    print("  ".join(f"{k}: {v}" for k, v in info.items()))
    print()
    print("| scenario | target | p50 ms | p90 ms | p99 ms | mean ms | samples | body KiB | gzip KiB | format |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scenario, rows in results.items():
        for r in rows:
            fmt = r["content_type"].split(";")[0] + ("; " + r["content_type"].split(";")[1].strip()
                                                     if ";" in r["content_type"] else "")
            print(f"| {scenario} ({args.domains} domains) | {r['target']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {r['samples']} | {r['body_bytes'] / 1024:.0f} | "
                  f"{r['wire_bytes'] / 1024:.0f} | {fmt} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
