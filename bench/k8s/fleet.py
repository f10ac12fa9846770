"""bench/k8s/fleet.py: N agents' publishers against one real kube-apiserver.

Each agent is the real ``PublisherLoop`` with the real ``kubernetes`` client, as its own
ServiceAccount (a token bound to its pod on its node), for its own node, with its own fixture root
(a private copy of one of the generated fixture hosts, discovered by nodeagent). The control plane
is ``tests/k8s/control-plane`` (etcd, kube-apiserver, kube-scheduler); no proxy sits in between.

Time is compressed by ``--scale`` as in bench_k8s.py (watch timeout 300–600 s, resync 300 s,
NodeResourceTopology verification 3600 s, kubelet's unchanged-status report every 300 s, all
divided by it). Requests are the API server's own count (``apiserver_request_total`` for nodes,
noderesourcetopologies and events, kubelet's ``nodes/status`` heartbeats excluded), per node and
per simulated hour. API-server CPU is what the agents add over a baseline window of the same
length with the same Nodes and heartbeats but no agent.

Usage: python bench/k8s/fleet.py [--agents 100] [--scale 60] [--hours 1] [--out bench/k8s/fleet.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from nodeagent.k8s.client import Timeouts, connect  # noqa: E402
from nodeagent.k8s.loop import LoopConfig, PublisherLoop  # noqa: E402
from tests.k8s.cluster import ControlPlane, lift_not_ready_taint, session_control_plane  # noqa: E402

HOSTS = ["intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "desktop-no-iommu", "minimal"]
RESOURCES = ("nodes", "noderesourcetopologies", "events")
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE")
KUBELET_STATUS_REPORT_S = 300.0
TICKS = os.sysconf("SC_CLK_TCK")


def scaled(scale: float) -> LoopConfig:
    production = LoopConfig()
    return replace(production, resync_period=production.resync_period / scale,
                   watch_timeout=max(1.0, production.watch_timeout / scale),
                   topology_verify_period=production.topology_verify_period / scale,
                   backoff_base=production.backoff_base / scale, backoff_max=production.backoff_max / scale,
                   min_watch_seconds=0.0)


def requests_by_kind(plane: ControlPlane) -> Counter[str]:
    """apiserver_request_total for the agents' resources, as "VERB resource" → count."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(_metrics(plane)):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name != "apiserver_request_total" or labels.get("resource") not in RESOURCES:
                continue
            if labels.get("subresource"):
                continue  # nodes/status: kubelet's heartbeats, not the agents'
            counts[f"{labels['verb']} {labels['resource']}"] += int(sample.value)
    return counts


def watches_held(plane: ControlPlane) -> int:
    from prometheus_client.parser import text_string_to_metric_families

    held = 0
    for family in text_string_to_metric_families(_metrics(plane)):
        for sample in family.samples:
            if (sample.name == "apiserver_longrunning_requests" and sample.labels.get("verb") == "WATCH"
                    and sample.labels.get("resource") == "nodes"):
                held += int(sample.value)
    return held


def _metrics(plane: ControlPlane) -> str:
    return plane.admin.text("/metrics")


def process(plane: ControlPlane, name: str) -> tuple[float, float]:
    """(CPU seconds so far, RSS MiB) of one control-plane process."""
    pid = next(p["pid"] for p in plane.state["processes"] if p["name"] == name)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def diff(after: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0})


def kubelets(plane: ControlPlane, nodes: list[str], every: float, stop: threading.Event) -> None:
    """Each node's kubelet reports an unchanged status every `every` s (spread over the period)."""
    index = 0
    while not stop.wait(every / len(nodes)):
        node = nodes[index % len(nodes)]
        index += 1
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        plane.admin.patch(f"/api/v1/nodes/{node}/status", {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "bench",
             "lastHeartbeatTime": now, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}, "strategic-merge")


def window(plane: ControlPlane, seconds: float) -> dict[str, Any]:
    before = requests_by_kind(plane)
    cpu0, _ = process(plane, "kube-apiserver")
    etcd0, _ = process(plane, "etcd")
    time.sleep(seconds)
    cpu1, rss = process(plane, "kube-apiserver")
    etcd1, etcd_rss = process(plane, "etcd")
    return {"requests": diff(requests_by_kind(plane), before), "cpu_s": cpu1 - cpu0, "etcd_cpu_s": etcd1 - etcd0,
            "rss_mib": rss, "etcd_rss_mib": etcd_rss, "watches": watches_held(plane)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--scale", type=float, default=60.0)
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours per measuring window")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "k8s" / "fleet.json")
    args = parser.parse_args()
    hour = 3600.0 / args.scale
    measure = args.hours * hour
    config = scaled(args.scale)

    from fixtures.hostgen import build_host
    from nodeagent.daemon.profiles import load_file
    from nodeagent.discover import discover
    from nodeagent.host import Host

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    plane = session_control_plane(work / "control-plane")
    loops: list[PublisherLoop] = []
    stop = threading.Event()
    try:
        templates = {host: build_host(host, work / "templates" / host) for host in HOSTS}
        nodes, inventories = [], []
        for i in range(args.agents):
            root = work / "roots" / f"agent-{i:03d}"
            # its own tree, hard-linked (nothing writes to it: the publisher only reads the host)
            shutil.copytree(templates[HOSTS[i % len(HOSTS)]], root, symlinks=True, copy_function=os.link)
            inventories.append(discover(Host(str(root))))
            nodes.append(f"fleet-{i:03d}")
        for node in nodes:
            lift_not_ready_taint(plane.admin, plane.admin.create("/api/v1/nodes", {
                "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "allocatable": {"cpu": "32", "memory": "256Gi"}}}))
        beats = threading.Thread(target=kubelets, args=(plane, nodes, KUBELET_STATUS_REPORT_S / args.scale, stop),
                                 daemon=True)
        beats.start()
        time.sleep(min(measure, 5))
        baseline = window(plane, measure)
        print(f"baseline (nodes + kubelet heartbeats, no agent): {baseline['cpu_s']:.1f} CPU-s in {measure:.0f} s")

        started = time.monotonic()
        for node, inventory in zip(nodes, inventories, strict=True):
            api = connect(plane.agent_kubeconfig(work / f"{node}.kubeconfig", node),
                          timeouts=Timeouts(connect=5.0, request=30.0))
            loop = PublisherLoop(api, node, config=config, rng=random.Random(node))
            loop.update(inventory)
            loop.start()
            loops.append(loop)
        assert all(loop.wait_synced(300) for loop in loops), "not every agent converged"
        startup_s = time.monotonic() - started
        print(f"{args.agents} agents converged in {startup_s:.1f} s")
        time.sleep(min(hour / 4, 30))  # past the first watch renewals

        steady = window(plane, measure)
        per_node_hour = {k: v / args.agents / args.hours for k, v in steady["requests"].items()}
        writes = sum(v for k, v in steady["requests"].items() if k.split()[0] in WRITE_VERBS)
        print(f"steady state: {sum(per_node_hour.values()):.1f} requests/node/h, writes {writes}, "
              f"watches held {steady['watches']}, apiserver +{steady['cpu_s'] - baseline['cpu_s']:.1f} CPU-s "
              f"per {args.hours:g} simulated h, RSS {steady['rss_mib']:.0f} MiB")

        # A fleet-wide relabel: a profile reaches every node at once (a new label, a new taint).
        profile = load_file("high-density.yaml", str(REPO / "daemonset" / "profiles" / "high-density.yaml")).profile
        before = requests_by_kind(plane)
        cpu0, _ = process(plane, "kube-apiserver")
        changed = time.monotonic()
        for loop, inventory in zip(loops, inventories, strict=True):
            loop.update(inventory, profile)
        assert all(loop.wait_synced(300) for loop in loops), "the relabel did not converge"
        relabel_s = time.monotonic() - changed
        time.sleep(1.0)
        relabel = diff(requests_by_kind(plane), before)
        relabel_cpu = process(plane, "kube-apiserver")[0] - cpu0
        print(f"fleet-wide relabel: {sum(relabel.values())} requests ({dict(relabel)}), converged in "
              f"{relabel_s:.1f} s, apiserver {relabel_cpu:.1f} CPU-s")

        result = {
            "agents": args.agents, "scale": args.scale, "simulated_hours": args.hours, "window_s": measure,
            "kubernetes": plane.state["version"], "etcd": plane.state["etcd"],
            "startup_s": startup_s,
            "baseline": {**baseline, "requests": dict(baseline["requests"])},
            "steady": {**steady, "requests": dict(steady["requests"]),
                       "per_node_per_hour": per_node_hour, "writes": writes,
                       "apiserver_cpu_s_added_per_simulated_hour": (steady["cpu_s"] - baseline["cpu_s"]) / args.hours,
                       "etcd_cpu_s_added_per_simulated_hour":
                           (steady["etcd_cpu_s"] - baseline["etcd_cpu_s"]) / args.hours},
            "relabel": {"requests": dict(relabel), "converged_s": relabel_s, "apiserver_cpu_s": relabel_cpu},
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        stop.set()
        for loop in loops:
            loop.stop(timeout=10)
            loop.api.close()
        plane.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
