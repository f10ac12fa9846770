#!/usr/bin/env python3
"""What each import of a long-running ``nodeagent serve`` costs in memory, and what a running one maps.

Each chain runs in a fresh interpreter and imports its steps in order; after every step it reads
``/proc/self/smaps_rollup`` (Rss, Pss, and the Rss split into shared-clean file pages, i.e. the
libraries' code, and private-dirty pages, i.e. the heap and the libraries' data). A second run of
the same chain with tracemalloc on (started before the first step) gives what Python objects hold
after each step (tracemalloc's own bookkeeping would distort the first run's Rss). The deltas are
what the step added on top of the steps before it. nodeagent is compiled to bytecode first, as
``pip install`` does (compiling from source at import leaves the compiler's garbage in the heap).

    python bench/serve/import_costs.py              # Markdown tables
    python bench/serve/import_costs.py --json
    python bench/serve/import_costs.py --mappings   # a running serve (systemd mode), mapping by mapping

Chains:

* ``serve``: the interpreter, then what ``serve`` imports, part by part in the order that
  attributes each shared dependency to the first part needing it (the CLI; ``ssl``, which the
  standard library's ``http.client`` imports; the HTTP server on ``http.server``; prometheus_client
  as nodeagent imports it; discovery; the collectors; the daemon; pyudev), then libvirt-python in
  its two parts (the C extension with libvirt.so, then the generated ``libvirt.py``);
* ``serve, what it leaves out``: serve's imports, then what serve no longer imports: the whole
  prometheus_client package (its ``__init__``), and ``nodeagent.prep`` with the profile schema
  (loaded when a profile selects the node);
* ``client (lean, in a pod)``: serve's imports, then the kubernetes client the way nodeagent
  imports it in a pod (nodeagent/k8s/kubeimport.py: configuration, api_client, rest, the in-cluster
  loader, watch), then the kubeconfig loader (only with ``--kubeconfig``: OAuth stack);
* ``client (whole package)``: serve's imports, then ``import kubernetes`` as the client's own
  documentation does, then a ``CoreV1Api`` (what nodeagent used before).

``--mappings`` starts ``nodeagent --root / serve --no-publish`` (the systemd unit's mode: libvirt
and NVML on, no cluster), scrapes it three times, lets it settle, and lists its
``/proc/PID/smaps`` by mapped file: Rss, Pss, shared-clean and private-dirty, and which of the
loaded Python extension modules (or libpython) links each library (``ldd``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

SERVE = ("serve's imports", "import nodeagent.cli, nodeagent.commands.serve, nodeagent.daemon.service, "
         "nodeagent.daemon.collector, nodeagent.metrics, nodeagent.discover, nodeagent.k8s.loop, pyudev")

SERVE_PARTS = [
    ("the CLI (click, nodeagent.cli)", "import nodeagent.cli"),
    ("ssl (imported by http.client)", "import ssl"),
    ("http.server (http.client, email, html, mimetypes)", "import nodeagent.httpserver"),
    ("prometheus_client (metrics_core, registry, process_collector)",  # as nodeagent/metrics/prom.py does
     "from nodeagent.lazypkg import lazy_package; lazy_package('prometheus_client'); "
     "import prometheus_client.metrics_core, prometheus_client.registry, prometheus_client.process_collector"),
    ("discovery (nodeagent.discover)", "import nodeagent.discover"),
    ("collectors (nodeagent.metrics)", "import nodeagent.metrics"),
    ("the daemon (serve, reconcile, health, publisher loop)",
     "import nodeagent.commands.serve, nodeagent.daemon.service, nodeagent.daemon.collector, nodeagent.k8s.loop"),
    ("pyudev (uevents on a live host)", "import pyudev"),
]

CHAINS: dict[str, list[tuple[str, str]]] = {
    "serve": [
        *SERVE_PARTS,
        ("libvirtmod (C extension + libvirt.so)", "import libvirtmod"),
        ("libvirt (the generated libvirt.py)", "import libvirt"),
    ],
    "serve, what it leaves out": [
        SERVE,
        ("prometheus_client's package __init__", "import prometheus_client; prometheus_client.REGISTRY"),
        ("nodeagent.prep and the profile schema (a profile selects the node)",
         "import nodeagent.prep.plan, nodeagent.prep.apply, nodeagent.profile"),
    ],
    "client (lean, in a pod)": [
        SERVE,
        ("client modules + in-cluster loader", "from nodeagent.k8s.kubeimport import client_modules; "
                                               "client_modules(kubeconfig_loader=False)"),
        ("+ kubeconfig loader (OAuth stack)", "client_modules(kubeconfig_loader=True)"),
    ],
    "client (whole package)": [
        SERVE,
        ("import kubernetes", "import kubernetes"),
        ("kubernetes.client.CoreV1Api()", "kubernetes.client.CoreV1Api(kubernetes.client.ApiClient())"),
    ],
}

PROBE = """
import json, sys, tracemalloc
sys.path.insert(0, {repo!r})
def smaps():
    out = {{}}
    for line in open("/proc/self/smaps_rollup"):
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Shared_Clean", "Private_Dirty"):
            out[key] = int(rest.split()[0]) / 1024
    return out
if {trace!r}:
    tracemalloc.start()
rows = [dict(step="interpreter", **smaps(), traced=tracemalloc.get_traced_memory()[0] / 2**20,
             modules=len(sys.modules))]
for name, code in {steps!r}:
    exec(code)
    rows.append(dict(step=name, **smaps(), traced=tracemalloc.get_traced_memory()[0] / 2**20,
                     modules=len(sys.modules)))
print(json.dumps(rows))
"""


def _run(steps: list[tuple[str, str]], trace: bool) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(repo=str(REPO), steps=steps, trace=trace)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(steps: list[tuple[str, str]]) -> list[dict[str, Any]]:
    rows = _run(steps, trace=False)
    for row, traced in zip(rows, _run(steps, trace=True), strict=True):
        row["traced"] = traced["traced"]
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        return True
    except OSError:
        return False


def serve_smaps(settle_s: float) -> list[tuple[str, dict[str, int]]]:
    """A systemd-mode serve's smaps, summed per mapped file (anonymous mappings under their kind)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "nodeagent", "--root", "/", "serve", "--no-publish", "--listen",
                             f"127.0.0.1:{port}"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _scrape(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("serve did not come up")
            time.sleep(0.3)
        for _ in range(3):
            time.sleep(1)
            _scrape(url)
        time.sleep(settle_s)
        text = Path(f"/proc/{proc.pid}/smaps").read_text()
    finally:
        proc.terminate()
        proc.wait(30)
    totals: dict[str, dict[str, int]] = {}
    current: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
            name = fields[5] if len(fields) > 5 else "[anon]"
            current = totals.setdefault(name, {})
        elif len(fields) >= 2 and fields[0].endswith(":") and fields[1].isdigit():
            current[fields[0][:-1]] = current.get(fields[0][:-1], 0) + int(fields[1])
    return sorted(totals.items(), key=lambda item: -item[1].get("Rss", 0))


def _ldd(path: str) -> set[str]:
    done = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    found = set()
    for line in done.stdout.splitlines():
        parts = line.split("=>")
        target = (parts[1] if len(parts) > 1 else parts[0]).split("(")[0].strip()
        if target.startswith("/"):
            found.add(os.path.realpath(target))
    return found


def print_mappings(settle_s: float) -> None:
    mappings = serve_smaps(settle_s)
    files = [name for name, _ in mappings if name.startswith("/")]
    roots = [f for f in files if "cpython" in Path(f).name or "libpython" in Path(f).name]
    closure = {root: _ldd(root) for root in roots}

    def linked_by(name: str) -> str:
        if name in roots:
            return "(Python module)" if "cpython" in name else "(the interpreter)"
        real = os.path.realpath(name)
        users = sorted(Path(root).name.split(".")[0] for root, deps in closure.items() if real in deps)
        if len(users) > 3:
            return f"{', '.join(users[:3])} +{len(users) - 3}"
        return ", ".join(users) or "(dlopen: ctypes)"

    total = {key: sum(m.get(key, 0) for _, m in mappings) for key in ("Rss", "Pss", "Shared_Clean", "Private_Dirty")}
    print(f"\nserve (systemd mode) after 3 scrapes and {settle_s:.0f} s: Rss {total['Rss'] / 1024:.1f} MiB, "
          f"Pss {total['Pss'] / 1024:.1f} MiB\n")
    print("| mapping | Rss KiB | Pss KiB | shared clean | private dirty | linked by |")
    print("|---|---|---|---|---|---|")
    rest = {key: 0 for key in total}
    for name, m in mappings:
        if m.get("Rss", 0) < 150:
            for key in rest:
                rest[key] += m.get(key, 0)
            continue
        label = Path(name).name if name.startswith("/") else name
        print(f"| {label} | {m.get('Rss', 0)} | {m.get('Pss', 0)} | {m.get('Shared_Clean', 0)} | "
              f"{m.get('Private_Dirty', 0)} | {linked_by(name) if name.startswith('/') else ''} |")
    print(f"| (the rest, under 150 KiB each) | {rest['Rss']} | {rest['Pss']} | {rest['Shared_Clean']} | "
          f"{rest['Private_Dirty']} | |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--mappings", action="store_true", help="a running serve's smaps, mapping by mapping")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the scrapes (--mappings)")
    args = parser.parse_args()
    # nodeagent as installed: bytecode compiled (pip does it), not compiled from source at each start
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "nodeagent")], check=True)
    if args.mappings:
        print_mappings(args.settle)
        return 0
    results = {name: measure(steps) for name, steps in CHAINS.items()}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for name, rows in results.items():
        print(f"\n{name}\n")
        print("| step | Rss | +Rss | +Pss | +shared clean | +private dirty | +tracemalloc | +modules |")
        print("|---|---|---|---|---|---|---|---|")
        previous = None
        for row in rows:
            if previous is None:
                print(f"| {row['step']} | {row['Rss']:.1f} MiB | | | | | | {row['modules']} |")
            else:
                print(f"| {row['step']} | {row['Rss']:.1f} MiB | +{row['Rss'] - previous['Rss']:.1f} | "
                      f"+{row['Pss'] - previous['Pss']:.1f} | +{row['Shared_Clean'] - previous['Shared_Clean']:.1f} | "
                      f"+{row['Private_Dirty'] - previous['Private_Dirty']:.1f} | "
                      f"+{row['traced'] - previous['traced']:.1f} | +{row['modules'] - previous['modules']} |")
            previous = row
    return 0


if __name__ == "__main__":
    sys.exit(main())
