"""bench/k8s: Kubernetes API requests per node per hour, in steady state, at a change, in an outage.

The real publisher loop (nodeagent.k8s.loop) and the real kubernetes client talk, as the agent's
own ServiceAccount, to a real kube-apiserver (tests/k8s/control-plane) through the tests' fault
proxy (tests/k8s/faultproxy.py), which counts every request and stands in for an outage. Time is compressed:
every period of the production defaults (watch timeout 300 s, resync 300 s, topology verify
3600 s, back-off 0.5 s → 60 s) and kubelet's unchanged-status report (every 5 min) is divided by
``--scale``, so one simulated hour takes 3600/scale seconds. Counts are reported per simulated hour.

Usage: python bench/k8s/bench_k8s.py [--scale 150] [--hours 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from nodeagent.k8s.client import Timeouts, connect
from nodeagent.k8s.loop import LoopConfig, PublisherLoop
from tests.k8s.cluster import ApiServer, running
from tests.support.factories import gpu_node_inventory, with_ksm

NODE = "bench-node"
PRODUCTION = LoopConfig()
KUBELET_STATUS_REPORT_S = 300.0  # nodeStatusReportFrequency: a status PATCH (a watch event) when nothing changed


def scaled(scale: float) -> LoopConfig:
    return replace(PRODUCTION,
                   resync_period=PRODUCTION.resync_period / scale,
                   watch_timeout=max(1.0, PRODUCTION.watch_timeout / scale),
                   topology_verify_period=PRODUCTION.topology_verify_period / scale,
                   backoff_base=PRODUCTION.backoff_base / scale,
                   backoff_max=PRODUCTION.backoff_max / scale,
                   min_watch_seconds=0.0)


def tally(server: ApiServer, since: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for request in server.requests[since:]:
        counts[f"{request.verb} {request.resource}"] += 1
    return counts


def kubelet(server: ApiServer, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        server.heartbeat(NODE)


def row(name: str, counts: Counter[str], hours: float) -> str:
    writes = sum(v for k, v in counts.items() if k.split()[0] in ("create", "update", "patch", "delete"))
    total = sum(counts.values())
    detail = ", ".join(f"{k} {v / hours:.1f}" for k, v in sorted(counts.items()))
    return f"| {name} | {total / hours:.1f} | {writes / hours:.1f} | {detail} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=150.0, help="time compression (default 150)")
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours of steady state")
    args = parser.parse_args()
    hour = 3600.0 / args.scale
    config = scaled(args.scale)
    print(f"time compression {args.scale:g}x: one simulated hour = {hour:.1f} s; "
          f"watch timeout {config.watch_timeout:g}-{2 * config.watch_timeout:g} s (production 300-600 s)")
    print()
    print("| scenario | requests / node / h | writes / node / h | by kind (per simulated hour) |")
    print("|---|---|---|---|")

    with running() as server:
        server.add_node(NODE, labels={"kubernetes.io/hostname": NODE})
        kubeconfig = server.agent_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", NODE)
        api = connect(kubeconfig, timeouts=Timeouts(connect=2.0, request=5.0))
        loop = PublisherLoop(api, NODE, config=config, rng=random.Random(1))
        inventory = gpu_node_inventory()
        stop = threading.Event()
        beats = threading.Thread(target=kubelet, args=(server, KUBELET_STATUS_REPORT_S / args.scale, stop), daemon=True)

        mark = server.mark()
        loop.update(inventory)
        loop.start()
        assert loop.wait_synced(30)
        print(row("start-up (first publication), per start", tally(server, mark), 1.0))

        beats.start()
        mark = server.mark()
        began = time.monotonic()
        end = began + args.hours * hour
        while time.monotonic() < end:
            loop.update(inventory)  # serve rediscovers the same node every few seconds
            time.sleep(min(0.25, hour / 100))
        hours = (time.monotonic() - began) / hour
        print(row(f"steady state, {hours:.1f} h, kubelet status every 5 min", tally(server, mark), hours))

        mark = server.mark()
        loop.update(with_ksm(inventory, 1))  # a change: KSM turned on (2 labels; high-density becomes ready)
        assert loop.wait_synced(30)
        time.sleep(0.2)
        print(row("an inventory change (KSM on), per change", tally(server, mark), 1.0))

        mark = server.mark()
        server.mutate_node(NODE, lambda o: o["metadata"]["labels"].pop("nodeagent.io/kvm"))
        deadline = time.monotonic() + 10
        while "nodeagent.io/kvm" not in server.node(NODE)["metadata"]["labels"] and time.monotonic() < deadline:
            time.sleep(0.01)
        print(row("a label removed by someone (one watch event), per removal", tally(server, mark), 1.0))

        smaller = replace(with_ksm(inventory, 1), gpus=inventory.gpus[1:])
        mark = server.mark()
        loop.update(smaller)  # a GPU left vfio-pci: labels and the topology change
        assert loop.wait_synced(30)
        time.sleep(0.2)
        print(row("a GPU unbound from vfio-pci, per change", tally(server, mark), 1.0))

        server.inject(status=503, times=10**9)  # the API server is down for a simulated hour
        mark = server.mark()
        loop.update(inventory)  # with a change pending, so that the reconciler retries too
        time.sleep(hour)
        print(row("API server down (503), per hour of outage", tally(server, mark), 1.0))
        server.faults.clear()
        mark = server.mark()
        recovered = loop.wait_synced(2 * config.backoff_max + 10)
        print(row("recovery after the outage, once", tally(server, mark), 1.0))
        assert recovered

        loop.stop()
        mark = server.mark()
        loop = PublisherLoop(api, NODE, config=config, rng=random.Random(2))
        loop.update(inventory)
        loop.start()  # an agent restart (DaemonSet rollout) on a node that already carries its labels
        assert loop.wait_synced(30)
        time.sleep(0.2)
        print(row("agent restart, nothing changed, per restart", tally(server, mark), 1.0))

        stop.set()
        loop.stop()
        api.close()


if __name__ == "__main__":
    main()
