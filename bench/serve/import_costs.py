#!/usr/bin/env python3
"""What each import of a long-running ``nodeagent serve`` costs in memory.

Each chain runs in a fresh interpreter and imports its steps in order; after every step it reads
``/proc/self/smaps_rollup`` (Rss, Pss, and the Rss split into shared-clean file pages, i.e. the
libraries' code, and private-dirty pages, i.e. the heap and the libraries' data). A second run of
the same chain with tracemalloc on (started before the first step) gives what Python objects hold
after each step (tracemalloc's own bookkeeping would distort the first run's Rss). The deltas are
what the step added on top of the steps before it.

    python bench/serve/import_costs.py            # Markdown tables
    python bench/serve/import_costs.py --json

Chains:

* ``serve``: the interpreter, then what ``serve`` always imports (the CLI, the daemon, metrics,
  discovery, the publisher loop), then libvirt-python in its two parts (the C extension with
  libvirt.so, then the generated ``libvirt.py``);
* ``client (lean, in a pod)``: serve's imports, then the kubernetes client the way nodeagent
  imports it in a pod (nodeagent/k8s/kubeimport.py: configuration, api_client, rest, the in-cluster
  loader, watch), then the kubeconfig loader (only with ``--kubeconfig``: OAuth stack);
* ``client (whole package)``: serve's imports, then ``import kubernetes`` as the client's own
  documentation does, then a ``CoreV1Api`` (what nodeagent used before).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

SERVE = ("serve's imports", "import nodeagent.cli, nodeagent.commands.serve, nodeagent.daemon.service, "
         "nodeagent.metrics, nodeagent.discover, nodeagent.k8s.loop")

CHAINS: dict[str, list[tuple[str, str]]] = {
    "serve": [
        SERVE,
        ("libvirtmod (C extension + libvirt.so)", "import libvirtmod"),
        ("libvirt (the generated libvirt.py)", "import libvirt"),
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
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
