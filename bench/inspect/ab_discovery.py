"""In-process discovery of two nodeagent trees, measured in pairs (A B A B …) on the same root.

On a shared machine the speed drifts by tens of percent within a minute, so two separate runs of
``bench_inspect.py`` can disagree about which tree is faster. Here one worker process per tree
(each importing its own ``nodeagent``, warmed by one discovery) runs one discovery when asked and
answers with its CPU time (user + system of the worker); the ratio is taken pair by pair, as
``farm-bench`` does for whole processes.

Usage: python bench/inspect/ab_discovery.py --a TREE_A --b TREE_B --root ROOT [--pairs 30]
(a tree is a checkout's root: the directory holding ``nodeagent/``). Prints the median CPU of each
and the median and quartiles of the pairwise ratio A/B.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

WORKER = """
import gc, sys, time
sys.path.insert(0, sys.argv[1])
from nodeagent.discover import discover
from nodeagent.host import Host
root = sys.argv[2]
discover(Host(root))
for line in sys.stdin:
    host = Host(root)
    gc.collect()
    start = time.process_time()
    discover(host)
    print(time.process_time() - start, flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", required=True, help="tree A (its nodeagent/ is imported)")
    parser.add_argument("--b", required=True, help="tree B")
    parser.add_argument("--root", required=True, help="the host root both discover")
    parser.add_argument("--pairs", type=int, default=30)
    args = parser.parse_args()
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, tree, args.root], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for tree in (args.a, args.b)]
    times: list[list[float]] = [[], []]
    try:
        for _ in range(args.pairs):
            for index, worker in enumerate(workers):
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
                times[index].append(float(worker.stdout.readline()) * 1000)
    finally:
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait()
    ratios = [a / b for a, b in zip(times[0], times[1], strict=True)]
    quartiles = statistics.quantiles(ratios, n=4)
    print(f"root {args.root}, {args.pairs} pairs")
    print(f"A {args.a}: CPU median {statistics.median(times[0]):.1f} ms, min {min(times[0]):.1f}")
    print(f"B {args.b}: CPU median {statistics.median(times[1]):.1f} ms, min {min(times[1]):.1f}")
    print(f"A/B pairwise: median {statistics.median(ratios):.3f} (quartiles {quartiles[0]:.3f}–{quartiles[2]:.3f})")


if __name__ == "__main__":
    main()
