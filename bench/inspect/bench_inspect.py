"""bench/inspect: how fast and how frugal discovery is, measured against its peers in one run.

Whole-process timings are interleaved (one run of each command per round) so that machine noise
hits every peer alike. On this host:
  * ``nodeagent inspect -o json``        the product
  * ``python -c 'import click, yaml'``  the interpreter floor
  * ``lstopo-no-graphics --of xml``      hwloc's topology tool (apt hwloc-nox)
  * ``nodeagent --help``                CLI start (heavy clients must be imported lazily)
and on the big host (bench/inspect/bighost.py: 1024 CPUs, 16 NUMA nodes, 16 GPUs, ~475 PCI
functions, generated with fixtures/hostgen.py into a temporary directory, never committed):
  * ``nodeagent --root BIG inspect -o json`` against the same floor and
  * ``lstopo-no-graphics --input BIG --of xml`` (hwloc reading the same tree).
Then in-process discovery (no interpreter start): time, host files read and the system calls of
one discovery (``strace -c -f``, the import-only run subtracted), on this host, the intel-2s-8gpu
fixture, the big host, and the big host bind-mounted at /mnt/nodeagent-bench-host and read with
``--root /mnt/nodeagent-bench-host --live`` as the DaemonSet reads ``/host`` (root only; the
mount is removed afterwards).

Usage: python bench/inspect/bench_inspect.py [--rounds 30] [--no-big] [--no-bind]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.inspect.bighost import build_big_host  # noqa: E402
from fixtures.hostgen import build_host  # noqa: E402
from nodeagent.discover import discover  # noqa: E402
from nodeagent.host import Host, HostRecord  # noqa: E402

PY = sys.executable
FLOOR = ("python -c 'import click, yaml' (floor)", [PY, "-c", "import click, yaml"])
BIND = "/mnt/nodeagent-bench-host"


def this_host_peers() -> dict[str, list[str]]:
    return dict([("nodeagent inspect -o json", [PY, "-m", "nodeagent", "inspect", "-o", "json"]), FLOOR,
                 ("lstopo-no-graphics --of xml", ["lstopo-no-graphics", "--of", "xml"]),
                 ("nodeagent --help", [PY, "-m", "nodeagent", "--help"])])


def big_host_peers(root: str) -> dict[str, list[str]]:
    return dict([("nodeagent --root BIG inspect -o json", [PY, "-m", "nodeagent", "--root", root, "inspect", "-o",
                                                           "json"]), FLOOR,
                 ("lstopo-no-graphics --input BIG --of xml", ["lstopo-no-graphics", "--input", root, "--of", "xml"])])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def whole_process(peers: dict[str, list[str]], rounds: int) -> dict[str, list[float]]:
    """Interleaved runs. nodeagent's bytecode is compiled first, as an installed package's is: with
    PYTHONDONTWRITEBYTECODE set every run would compile nodeagent's sources and the floor's
    libraries would not: a figure no node sees."""
    compileall.compile_dir(str(REPO / "nodeagent"), quiet=1)
    peers = {name: argv for name, argv in peers.items() if shutil.which(argv[0])}
    times: dict[str, list[float]] = {name: [] for name in peers}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPATH": str(REPO)}
    for argv in peers.values():  # warm the page cache once
        subprocess.run(argv, capture_output=True, check=True, env=env, cwd=REPO)
    for _ in range(rounds):
        for name, argv in peers.items():
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True, env=env, cwd=REPO)
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def print_whole(title: str, times: dict[str, list[float]]) -> None:
    floor = statistics.median(times[FLOOR[0]])
    print(f"\n| {title} (whole process) | p50 ms | p90 ms | × floor |\n|---|---|---|---|")
    for name, values in times.items():
        p50 = statistics.median(values)
        print(f"| {name} | {p50:.1f} | {percentile(values, 0.9):.1f} | {p50 / floor:.2f} |")


def in_process(root: str, rounds: int, *, live: bool | None = None
               ) -> tuple[list[float], list[float], int, int, int]:
    """Wall and CPU (user + system of this process) milliseconds of each discovery; CPU time
    suffers least from the other work on a shared machine."""
    samples, cpu, reads = [], [], 0
    inv = None
    for _ in range(rounds):
        host = Host(root, live=live)
        record = HostRecord()
        start, start_cpu = time.perf_counter(), time.process_time()
        inv = discover(host, record=record)
        samples.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        reads = record.stats.reads
    assert inv is not None
    return samples, cpu, reads, inv.cpu.logical_cpus, inv.pci_devices


_PROBE = """
import sys
sys.path.insert(0, {repo!r})
from nodeagent.discover import discover
from nodeagent.host import Host
host = Host({root!r}, live={live!r})
if {run}:
    discover(host)
"""


def syscalls(root: str, *, live: bool | None = None) -> int | None:
    """System calls of one discovery: strace -c -f of a run, less the same run without discovering."""
    if not shutil.which("strace"):
        return None
    totals = []
    for run in (True, False):
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
            code = _PROBE.format(repo=str(REPO), root=root, live=live, run=run)
            subprocess.run(["strace", "-f", "-c", "-o", out.name, PY, "-c", code], check=True, capture_output=True)
            match = re.search(r"^100\.00\s+\S+\s+\S+\s+(\d+)", out.read(), re.M)
            if match is None:
                return None
            totals.append(int(match.group(1)))
    return totals[0] - totals[1]


@contextlib.contextmanager
def bind_mounted(tree: str) -> Iterator[str | None]:
    """The tree bind-mounted at /mnt/nodeagent-bench-host (None when this cannot be done)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield None
        return
    os.makedirs(BIND, exist_ok=True)
    if subprocess.run(["mount", "--bind", tree, BIND], capture_output=True, check=False).returncode != 0:
        yield None
        return
    try:
        yield BIND
    finally:
        subprocess.run(["umount", BIND], check=False)
        with contextlib.suppress(OSError):
            os.rmdir(BIND)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--no-big", action="store_true", help="skip the 1024-CPU host")
    parser.add_argument("--no-bind", action="store_true", help="skip the bind-mounted run")
    args = parser.parse_args()
    print(f"machine: {platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
          f"load {os.getloadavg()[0]:.1f} · python {platform.python_version()} · {time.strftime('%Y-%m-%d')}")
    print_whole("this host", whole_process(this_host_peers(), args.rounds))
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("this host", "/", None), ("intel-2s-8gpu fixture", str(build_host("intel-2s-8gpu",
                                                                                      Path(tmp) / "intel")), None)]
        big = None
        if not args.no_big:
            big = str(build_big_host(Path(tmp) / "big"))
            print_whole("big host", whole_process(big_host_peers(big), args.rounds))
            cases.append(("big host", big, None))
        with (bind_mounted(big) if big and not args.no_bind else contextlib.nullcontext()) as mounted:
            if mounted:
                cases.append((f"big host via bind mount ({mounted}, --live)", mounted, True))
            print("\n| in-process discovery | p50 ms | p90 ms | CPU p50 ms | files read | system calls | "
                  "per file read |")
            print("|---|---|---|---|---|---|---|")
            for label, root, live in cases:
                samples, cpu, reads, cpus, pci = in_process(root, args.rounds, live=live)
                calls = syscalls(root, live=live)
                per = f"{calls / reads:.1f}" if calls else "—"
                print(f"| {label} ({cpus} CPUs, {pci} PCI functions) | {statistics.median(samples):.1f} | "
                      f"{percentile(samples, 0.9):.1f} | {statistics.median(cpu):.1f} | {reads} | "
                      f"{calls if calls is not None else '—'} | {per} |")


if __name__ == "__main__":
    main()
