"""bench/inspect: how fast and how frugal discovery is, measured against its peers in one run.

Whole-process timings are interleaved (one run of each command per round) so that machine noise
hits every peer alike:
  * ``nodeagent inspect -o json``        the product
  * ``python -c 'import click, yaml'``  the interpreter floor
  * ``lstopo-no-graphics --of xml``      hwloc's topology tool (apt hwloc-nox)
  * ``nodeagent --help``                CLI start (heavy clients must be imported lazily)
Then in-process discovery time (no interpreter start) and host files read, on this host and on the
largest fixture (intel-2s-8gpu: 224 CPUs, 8 GPUs).

Usage: python bench/inspect/bench_inspect.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures.hostgen import build_host
from nodeagent.discover import discover
from nodeagent.host import Host, HostRecord

PEERS = {
    "nodeagent inspect -o json": [sys.executable, "-m", "nodeagent", "inspect", "-o", "json"],
    "python -c 'import click, yaml' (floor)": [sys.executable, "-c", "import click, yaml"],
    "lstopo-no-graphics --of xml": ["lstopo-no-graphics", "--of", "xml"],
    "nodeagent --help": [sys.executable, "-m", "nodeagent", "--help"],
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def whole_process(rounds: int) -> dict[str, list[float]]:
    peers = {name: argv for name, argv in PEERS.items() if shutil.which(argv[0])}
    times: dict[str, list[float]] = {name: [] for name in peers}
    for argv in peers.values():  # warm the page cache once
        subprocess.run(argv, capture_output=True, check=True)
    for _ in range(rounds):
        for name, argv in peers.items():
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def in_process(root: str, rounds: int) -> tuple[list[float], int, int, int]:
    samples, reads = [], 0
    inv = None
    for _ in range(rounds):
        host = Host(root)
        record = HostRecord()
        start = time.perf_counter()
        inv = discover(host, record=record)
        samples.append((time.perf_counter() - start) * 1000)
        reads = record.stats.reads
    assert inv is not None
    return samples, reads, inv.cpu.logical_cpus, inv.pci_devices


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {platform.node()} · {platform.processor() or platform.machine()} · "
          f"python {platform.python_version()} · {time.strftime('%Y-%m-%d')}")
    times = whole_process(args.rounds)
    print("\n| command (whole process) | p50 ms | p90 ms |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.9):.1f} |")
    with tempfile.TemporaryDirectory() as tmp:
        fixture = str(build_host("intel-2s-8gpu", Path(tmp) / "intel"))
        print("\n| in-process discovery | p50 ms | p90 ms | files read | budget (3×CPUs + 40×PCI) |")
        print("|---|---|---|---|---|")
        for label, root in (("this host", "/"), ("intel-2s-8gpu fixture", fixture)):
            samples, reads, cpus, pci = in_process(root, args.rounds)
            print(f"| {label} ({cpus} CPUs, {pci} PCI functions) | {statistics.median(samples):.1f} | "
                  f"{percentile(samples, 0.9):.1f} | {reads} | {3 * cpus + 40 * pci} |")


if __name__ == "__main__":
    main()
