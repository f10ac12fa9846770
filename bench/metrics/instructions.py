#!/usr/bin/env python3
"""Instructions one VM-collector scrape executes, counted by valgrind (callgrind), for one or more trees.

Wall-clock and CPU times of a scrape on the shared development VM move by ±30% from one minute to
the next (the same tree measured twice in a row), which hides any change worth less than that.
An instruction count does not move: the same tree gives the same count to 0.1%, so a change of
a few percent can be measured, and two trees compared in any order. It is not a time (a cache
miss costs more than an add), so the figures in RESULTS.md pair it with the scrape bench.

How: the qemu-like scenario of ``scrape_latency.py`` (the intel-2s-8gpu inventory, ``--domains``
QEMU-like domains behind a stand-in connection) is built in a child process under
``valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce``; the child warms
the collector up (three scrapes), then runs the measured calls inside one ``functools.reduce``,
the only C function whose entry and exit switch the counting on and off. Building the inventory
and the domains is not counted.

Parts (``--parts``): ``collect`` (the whole VM collector), ``domains`` (``LibvirtSource.domains()``:
the stand-in's records and the samples made of them), ``write`` (every domain's values written
to text, all families), ``seconds`` (the nanosecond values as seconds text alone).

    python bench/metrics/instructions.py --domains 250 --tree /path/to/before --tree .

Needs valgrind (Debian package ``valgrind``) and what scrape_latency.py needs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PARTS = ("collect", "domains", "write", "seconds")
ROUNDS = 5

_CHILD = r"""
import functools, sys
from itertools import chain
from operator import call
tree, domains, part, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sys.path[:0] = [tree, tree + "/bench/metrics"]
from scrape_latency import _build
from nodeagent.metrics import vm
node_metrics, keep = _build("qemu-like", domains)
collector = next(c for c in node_metrics.supervisor.collectors if c.name == "vm")
for _ in range(3):
    list(collector.collect())
source = collector._sources()[0]
text = collector._scrape_text[1]
raws = [s.raw for s in source.domains()]
nanoseconds = text.seconds(list(chain.from_iterable(map(call, text.getters, raws))))
measured = {
    "collect": lambda: list(collector.collect()),
    "domains": source.domains,
    "write": lambda: text.write(raws, [[] for _ in vm.FAMILIES]),
    "seconds": lambda: vm._seconds_text(nanoseconds),
}[part]
functools.reduce(lambda _acc, _i: measured(), range(rounds), None)
"""


def count(python: str, tree: Path, domains: int, part: str) -> float:
    """Millions of instructions of one call of ``part`` (the mean of ROUNDS calls)."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--collect-atstart=no",
         "--toggle-collect=functools_reduce", python, "-c", _CHILD, str(tree), str(domains), part, str(ROUNDS)],
        capture_output=True, text=True, check=False)
    match = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or match is None:
        raise SystemExit(f"{tree}: callgrind failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return int(match.group(1)) / ROUNDS / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, action="append",
                        help="a checkout to measure (repeatable; default: this one)")
    parser.add_argument("--domains", type=int, default=250)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--python", default=sys.executable, help="the interpreter (run directly, not a shim)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    trees = [t.resolve() for t in (args.tree or [REPO])]
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    print(f"M instructions per call, {args.domains} qemu-like domains (callgrind, mean of {ROUNDS} calls)")
    print("| tree | " + " | ".join(parts) + " |")
    print("|---|" + "---|" * len(parts))
    for tree in trees:
        figures = [count(args.python, tree, args.domains, part) for part in parts]
        print(f"| {tree} | " + " | ".join(f"{f:.2f}" for f in figures) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
