#!/usr/bin/env python3
"""Scrape latency of nodeagent's /metrics against node_exporter's, on the same machine, in one run.

nodeagent serves the intel-2s-8gpu fixture inventory (224 CPUs, 2 NUMA nodes, 8 H100s + the BMC's
VGA) plus libvirt domains, from its own process, like ``nodeagent serve`` would. node_exporter
(Debian's ``prometheus-node-exporter``, default collectors) runs on another loopback port. The two
are scraped alternately (the order flips every round), over kept-alive connections, with the
headers Prometheus sends (OpenMetrics preferred, gzip accepted); each sample is the time from
sending the request to the last byte of the body. Each server's CPU time (user + system, from
/proc/PID/stat) over the measured rounds is divided by its scrapes: on a shared machine it moves
less than the wall-clock figures.

Scenarios (``--scenario``):

* ``test-driver``: running domains on libvirt's ``test:///default`` driver, KubeVirt-named,
  some pinned, four holding passthrough GPUs. The test driver reports only the ``state`` stats
  group, so this measures the bulk call, the per-domain bookkeeping and the XML cache.
* ``qemu-like``: domains whose stats records are a real QEMU guest's full record (every KVM vCPU
  statistic; widened to 4 vCPUs, two disks, a NIC, a balloon driver), answered from memory by a
  stand-in connection under nodeagent's real ``LibvirtSource``: the series volume and parsing of
  real VMs without running them.

``--domains 100,250,500`` runs each scenario at each count (a fresh nodeagent process each);
``--in-process`` times ``NodeMetrics.text()`` without HTTP instead (for profiling).

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

# One getAllDomainStats record of a real QEMU/KVM guest (QEMU 7.2, libvirt 9.0; captured on the
# development VM from the tests' 1-vCPU guest: every KVM vCPU statistic QEMU's query-stats has).
# qemu_record() widens it to a typical KubeVirt VM: 4 vCPUs, two disks, one NIC, a guest balloon driver.
RECORD = REPO / "tests" / "metrics" / "data" / "qemu_stats_record.json"



def _hostdev(address: str) -> str:
    """A managed PCI <hostdev> for the GPU at ``address`` (0000:bb:ss.f), as KubeVirt writes one."""
    bus, rest = address.split(":")[1:]
    slot, fn = rest.split(".")
    return (f"<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' "
            f"bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/></source></hostdev>")

def qemu_record(vcpus: int = 4, disks: int = 2) -> dict[str, Any]:
    """A full stats record of a ``vcpus``-vCPU, ``disks``-disk QEMU guest, built from the captured one."""
    captured: dict[str, Any] = json.loads(RECORD.read_text())
    record = {k: v for k, v in captured.items() if not k.startswith(("vcpu.0.", "block.0."))}
    record.update({"vcpu.current": vcpus, "vcpu.maximum": vcpus, "block.count": disks,
                   "balloon.available": 4015000, "balloon.usable": 3700000, "balloon.unused": 3600000,
                   "balloon.disk_caches": 120000})
    for i in range(vcpus):
        record.update({f"vcpu.{i}.{k[len('vcpu.0.'):]}": v for k, v in captured.items() if k.startswith("vcpu.0.")})
    for i in range(disks):
        record.update({f"block.{i}.{k[len('block.0.'):]}": v for k, v in captured.items()
                       if k.startswith("block.0.")})
        record[f"block.{i}.name"] = f"vd{'abcdefgh'[i]}"
    return record


# --- the nodeagent process ------------------------------------------------------------------


def _start_test_domains(count: int, gpus: list[str], cpus: list[int]) -> Any:
    """Start ``count`` domains; returns the connection, which must stay open: the test driver's
    state lives only as long as some connection to it does."""
    import libvirt

    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    conn = libvirt.open("test:///default")
    for i in range(count):
        pin = f"<cputune><vcpupin vcpu='0' cpuset='{cpus[2 * i % len(cpus)]}'/></cputune>" if i % 2 else ""
        hostdev = _hostdev(gpus[i]) if i < len(gpus) else ""
        xml = (f"<domain type='test'><name>tenant-{i % 10}_vm-{i}</name><memory unit='MiB'>4096</memory>"
               f"<vcpu placement='static'>2</vcpu><metadata><kubevirt xmlns='http://kubevirt.io'><uid>{i}</uid>"
               f"</kubevirt></metadata><os><type>hvm</type></os>{pin}<devices>{hostdev}</devices></domain>")
        conn.defineXML(xml).create()
    return conn


class _FakeDomain:
    """The virDomain calls LibvirtSource makes, answered from memory."""

    def __init__(self, name: str, uuid: str, dom_id: int, xml: str) -> None:
        self._name, self._uuid, self._id, self._xml = name, uuid, dom_id, xml

    def name(self) -> str:
        return self._name

    def UUIDString(self) -> str:  # noqa: N802 - libvirt's name
        return self._uuid

    def ID(self) -> int:  # noqa: N802 - libvirt's name
        return self._id

    def XMLDesc(self, _flags: int = 0) -> str:  # noqa: N802 - libvirt's name
        return self._xml


class _FakeConnection:
    """A virConnect whose getAllDomainStats returns full QEMU records (fresh dicts each call, as
    libvirt-python builds them), so the scrape runs LibvirtSource's real code."""

    def __init__(self, domains: list[tuple[_FakeDomain, dict[str, Any]]]) -> None:
        self._domains = domains

    def getAllDomainStats(self, _stats: int, _flags: int) -> list[tuple[_FakeDomain, dict[str, Any]]]:  # noqa: N802
        return [(dom, dict(record)) for dom, record in self._domains]

    def getType(self) -> str:  # noqa: N802 - libvirt's name
        return "QEMU"

    def isAlive(self) -> int:  # noqa: N802 - libvirt's name
        return 1

    def close(self) -> int:
        return 0


def qemu_like_source(count: int, gpus: list[str], cpus: list[int]) -> Any:
    """A LibvirtSource over ``count`` KubeVirt-named QEMU-like domains: half pinned, half on
    hugepages, the first ones holding the passthrough GPUs."""
    from nodeagent.sources.libvirt_source import LibvirtSource

    record = qemu_record()
    domains = []
    for i in range(count):
        pins = "".join(f"<vcpupin vcpu='{v}' cpuset='{cpus[(4 * i + v) % len(cpus)]}'/>" for v in range(4))
        hostdev = _hostdev(gpus[i]) if i < len(gpus) else ""
        backing = "<memoryBacking><hugepages/></memoryBacking>" if i % 2 == 0 else ""
        xml = (f"<domain type='kvm'><name>tenant-{i % 10}_vm-{i}</name><memory unit='MiB'>4096</memory>"
               f"<vcpu placement='static'>4</vcpu><metadata><kubevirt xmlns='http://kubevirt.io'><uid>{i}</uid>"
               f"</kubevirt></metadata>{backing}<cputune>{pins if i % 2 else ''}</cputune>"
               f"<devices>{hostdev}</devices></domain>")
        domains.append((_FakeDomain(f"tenant-{i % 10}_vm-{i}", f"00000000-0000-4000-8000-{i:012d}", i + 1, xml),
                        record))
    source = LibvirtSource("qemu-like:///bench")
    source._conn = _FakeConnection(domains)  # the bench's stand-in for libvirtd
    return source


def _build(scenario: str, domains: int) -> tuple[Any, Any]:
    """The fixture inventory's NodeMetrics with ``domains`` domains (and what must stay referenced)."""
    from fixtures.hostgen import build_host
    from nodeagent.discover import discover
    from nodeagent.host import Host
    from nodeagent.metrics import MetricsOptions, build_metrics
    from nodeagent.sources.libvirt_source import LibvirtSource

    root = build_host("intel-2s-8gpu", Path(tempfile.mkdtemp(prefix="nodeagent-bench-")))
    host = Host(str(root))
    inventory = discover(host)
    passthrough = [g.address for g in inventory.gpus if g.passthrough_ready]
    options = MetricsOptions(live=False)  # a fixture root: no NVML, no /proc of QEMU processes
    if scenario == "test-driver":
        keep = _start_test_domains(domains, passthrough, inventory.numa[0].cpus)
        return build_metrics(lambda: inventory, host, options, libvirt=[LibvirtSource("test:///default")]), keep
    source = qemu_like_source(domains, passthrough, inventory.numa[0].cpus + inventory.numa[1].cpus)
    return build_metrics(lambda: inventory, host, options, libvirt=[source]), source


def _serve(scenario: str, domains: int, ready: Any) -> None:
    """Child process: build the fixture inventory, the domains and nodeagent's server; serve forever."""
    from nodeagent.metrics import MetricsServer

    node_metrics, _keep = _build(scenario, domains)
    server = MetricsServer(node_metrics.exposition, "127.0.0.1:0")
    ready.send(server.port)
    server.serve_forever()


def in_process(scenario: str, domains: int, rounds: int) -> dict[str, float]:
    """p50/p99 (ms) of one text exposition in this process, after warm-up: no HTTP, no gzip."""
    node_metrics, _keep = _build(scenario, domains)
    for _ in range(10):
        node_metrics.text()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        node_metrics.text()
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(times), "p99_ms": _percentile(times, 99)}


# --- measuring ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Target:
    name: str
    port: int
    pid: int
    conn: http.client.HTTPConnection | None = None

    def cpu_s(self) -> float:
        """User + system seconds the server process has used so far (/proc/PID/stat)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


def _summary(name: str, times: list[float], cpu_s: float, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
    lines = [line for line in raw.decode().splitlines() if line and not line.startswith("#")]
    ms = [t * 1000 for t in times]
    return {"target": name, "cpu_ms_per_scrape": cpu_s * 1000 / len(ms),
            "p50_ms": statistics.median(ms), "p90_ms": _percentile(ms, 90),
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
        assert agent.pid is not None
        targets = [Target("nodeagent", parent.recv(), agent.pid), Target("node_exporter", ne_port, exporter.pid)]
        for target in targets:
            _wait(target)
        times: dict[str, list[float]] = {t.name: [] for t in targets}
        last: dict[str, tuple[bytes, dict[str, str]]] = {}
        cpu: dict[str, float] = {}
        for round_no in range(warmup + rounds):
            if round_no == warmup:
                cpu = {t.name: t.cpu_s() for t in targets}
            order = targets if round_no % 2 == 0 else targets[::-1]
            for target in order:
                elapsed, body, headers = target.scrape()
                if round_no >= warmup:
                    times[target.name].append(elapsed)
                last[target.name] = (body, headers)
        used = {t.name: t.cpu_s() - cpu[t.name] for t in targets}
        return [_summary(t.name, times[t.name], used[t.name], *last[t.name]) for t in targets]
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
    parser.add_argument("--domains", default="100", help="comma-separated domain counts, e.g. 100,250,500")
    parser.add_argument("--rounds", type=int, default=500, help="measured scrapes of each target")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--in-process", action="store_true", help="time the exposition in-process, no HTTP")
    args = parser.parse_args()
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exporter is None:
        print("prometheus-node-exporter is not installed", file=sys.stderr)
        return 2
    scenarios = ["test-driver", "qemu-like"] if args.scenario == "both" else [args.scenario]
    info = machine()
    counts = [int(c) for c in args.domains.split(",")]
    if args.in_process:
        for scenario in scenarios:
            for count in counts:
                print(f"{scenario} ({count} domains): " + ", ".join(
                    f"{k} {v:.2f}" for k, v in in_process(scenario, count, args.rounds).items()))
        return 0
    results = {f"{s} ({n} domains)": run(s, n, args.rounds, args.warmup, exporter) for s in scenarios for n in counts}
    if args.json:
        print(json.dumps({"machine": info, "results": results}, indent=2))
        return 0
    print("  ".join(f"{k}: {v}" for k, v in info.items()))
    print()
    print("| scenario | target | p50 ms | p90 ms | p99 ms | mean ms | server CPU ms/scrape | samples | body KiB | "
          "gzip KiB | format |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for scenario, rows in results.items():
        for r in rows:
            fmt = r["content_type"].split(";")[0] + ("; " + r["content_type"].split(";")[1].strip()
                                                     if ";" in r["content_type"] else "")
            print(f"| {scenario} | {r['target']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {r['cpu_ms_per_scrape']:.1f} | {r['samples']} | "
                  f"{r['body_bytes'] / 1024:.0f} | "
                  f"{r['wire_bytes'] / 1024:.0f} | {fmt} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
