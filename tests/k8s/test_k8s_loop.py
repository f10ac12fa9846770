"""The publisher loop (what ``serve`` drives) against the real API server: watch, resync, faults."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from nodeagent.k8s.desired import DesiredState, desired_state
from nodeagent.k8s.loop import LoopConfig, PublisherLoop
from nodeagent.labels import NodeTaint
from tests.k8s.cluster import ApiServer
from tests.k8s.conftest import NODE, REQUEST_TIMEOUT
from tests.support.factories import gpu_node_inventory, make_inventory, with_ksm
from tests.support.waiting import wait_for

pytestmark = pytest.mark.k8s

FAST = LoopConfig(resync_period=0.1, watch_timeout=1, topology_verify_period=0.5,
                  backoff_base=0.01, backoff_max=0.1, min_watch_seconds=0.05)


@pytest.fixture
def make_loop(kube_api: Any) -> Iterator[Any]:
    loops: list[PublisherLoop] = []

    def make(config: LoopConfig = FAST, **kwargs: Any) -> PublisherLoop:
        loop = PublisherLoop(kube_api, NODE, config=config, rng=random.Random(4), **kwargs)
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        loop.stop(timeout=5)
        assert not loop.running


def started(make_loop: Any, desired: DesiredState | Any, **kwargs: Any) -> PublisherLoop:
    loop: PublisherLoop = make_loop(**kwargs)
    if isinstance(desired, DesiredState):
        loop.set_desired(desired)
    else:
        loop.update(desired)
    loop.start()
    assert loop.wait_synced(10), loop.stats
    return loop


def test_converges_then_zero_writes_over_many_resync_periods(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE, labels={"team": "infra"})
    loop = started(make_loop, gpu_node_inventory())
    assert apiserver.count(writes=True) == 2  # one Node PATCH, one NodeResourceTopology POST
    labels = apiserver.node(NODE)["metadata"]["labels"]
    assert labels["nodeagent.io/ready-general"] == "true" and labels["team"] == "infra"

    mark = apiserver.mark()
    reconciles = loop.stats.reconciles
    end = time.monotonic() + 1.5  # 15 resync periods, 3 topology verifications, a watch renewal
    while time.monotonic() < end:
        apiserver.heartbeat(NODE)  # kubelet's status updates: watch events that change no label
        loop.update(gpu_node_inventory())  # serve rediscovering the same node
        time.sleep(0.05)
    assert loop.stats.reconciles - reconciles >= 15
    assert apiserver.count(since=mark, writes=True) == 0
    assert apiserver.count(since=mark, verb="get", resource="nodes") == 0  # the watch is the only reader
    assert apiserver.count(since=mark, verb="list") == 0
    assert loop.synced


def test_label_removed_by_someone_comes_back_after_one_watch_event(
        apiserver: ApiServer, make_loop: Any, other_client: Any) -> None:
    apiserver.add_node(NODE)
    started(make_loop, make_inventory())
    mark = apiserver.mark()
    theirs = other_client.patch_node(NODE, [{"op": "remove", "path": "/metadata/labels/nodeagent.io~1ready-general"}],
                                     _content_type="application/json-patch+json")
    removed_at = theirs.metadata.resource_version
    wait_for(lambda: apiserver.node(NODE)["metadata"]["labels"].get("nodeagent.io/ready-general") == "true", 3)
    ours = [(r.method, r.verb) for r in apiserver.requests[mark:] if r.verb != "watch"]
    # The very next write to the Node is the restoration: it answered the one event that showed the loss.
    (restored, *_) = apiserver.node_writes_after(NODE, removed_at)
    assert restored["metadata"]["labels"].get("nodeagent.io/ready-general") == "true"
    assert ours == [("PATCH", "patch"), ("PATCH", "patch")]  # theirs, ours; no GET, no LIST: nothing polls


def test_label_value_changed_by_someone_is_put_back(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    started(make_loop, make_inventory())
    apiserver.mutate_node(NODE, lambda o: o["metadata"]["labels"].update({"nodeagent.io/kvm": "false", "x": "y"}))
    wait_for(lambda: apiserver.node(NODE)["metadata"]["labels"]["nodeagent.io/kvm"] == "true", 3)
    assert apiserver.node(NODE)["metadata"]["labels"]["x"] == "y"


def test_inventory_change_patches_only_the_difference_and_emits_events(
        apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    inv = make_inventory()
    loop = started(make_loop, inv)
    mark = apiserver.mark()
    loop.update(with_ksm(inv, 1))  # KSM turned on: ksm=true, and high-density becomes ready
    wait_for(lambda: apiserver.node(NODE)["metadata"]["labels"]["nodeagent.io/ksm"] == "true", 3)
    assert loop.wait_synced(3)
    wait_for(lambda: apiserver.events, 3)
    assert apiserver.count(since=mark, verb="patch") == 1
    event = apiserver.events[-1]
    assert event["reason"] == "WorkloadReady" and "high-density" in event["message"]


def test_5xx_survived_with_backoff(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    apiserver.inject(status=503, verb="patch", times=3)
    apiserver.inject(status=500, resource="noderesourcetopologies", times=2)
    loop = started(make_loop, gpu_node_inventory())
    assert loop.stats.errors >= 4
    assert apiserver.count(verb="patch", status=503) == 3
    assert apiserver.count(verb="patch", status=200) == 1
    assert NODE in apiserver.topologies


def test_persistent_errors_back_off_and_clear_synced(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    loop = started(make_loop, make_inventory(), config=replace(FAST, backoff_base=0.05, backoff_max=0.4))
    apiserver.inject(status=500, verb="patch", times=1000)
    mark = apiserver.mark()
    loop.update(with_ksm(make_inventory(), 1))
    time.sleep(1.5)
    assert not loop.synced
    attempts = apiserver.count(since=mark, verb="patch")
    # delays 0.05, 0.1, 0.2, 0.4, 0.4 … with up to 50% jitter: a handful of tries, not a hot loop
    assert 3 <= attempts <= 15
    apiserver.faults.clear()
    assert loop.wait_synced(3)


def test_retry_after_is_honoured(apiserver: ApiServer, make_loop: Any) -> None:
    """API Priority and Fairness answers 429 with Retry-After: the loop waits at least that long."""
    apiserver.add_node(NODE)
    apiserver.inject(status=429, verb="patch", retry_after=1)
    began = time.monotonic()
    started(make_loop, make_inventory())
    patches = [r.at for r in apiserver.requests if r.verb == "patch"]
    assert len(patches) == 2
    assert patches[1] - patches[0] >= 0.95  # not the 10 ms the back-off alone would wait
    assert time.monotonic() - began < 5


def test_conflicts_survived(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)

    def someone_cordons() -> None:
        apiserver.mutate_node(NODE, lambda o: o["spec"].setdefault("taints", []).append(
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}))

    apiserver.inject(verb="patch", before=someone_cordons, times=2)
    base = desired_state(make_inventory(), node_name=NODE, topology=False)
    started(make_loop, replace(base, taints=(NodeTaint("dedicated", "db", "NoSchedule"),)))
    assert apiserver.count(verb="patch", status=409) >= 1
    taints = apiserver.node(NODE)["spec"]["taints"]
    assert {t["key"] for t in taints} == {"node.kubernetes.io/unschedulable", "dedicated"}


def test_watch_failures_and_expiry_recovered(apiserver: ApiServer, make_loop: Any, other_client: Any) -> None:
    apiserver.add_node(NODE)
    loop = started(make_loop, make_inventory())
    apiserver.inject(status=500, verb="watch", times=2)
    apiserver.inject(drop=True, verb="watch")
    apiserver.compact()  # the next watch resumes from a compacted resourceVersion: 410, re-list
    relists = loop.stats.relists
    wait_for(lambda: loop.stats.relists > relists, 5)
    wait_for(lambda: apiserver.count(verb="watch", status=200) >= 3, 5)
    other_client.patch_node(NODE, {"metadata": {"labels": {"nodeagent.io/kvm": None}}},
                            _content_type="application/merge-patch+json")
    wait_for(lambda: apiserver.node(NODE)["metadata"]["labels"].get("nodeagent.io/kvm") == "true", 5)


def test_latency_and_timeouts_survived(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    apiserver.latency = 0.05
    apiserver.inject(delay=REQUEST_TIMEOUT + 0.5, verb="patch")  # longer than the request timeout
    loop = started(make_loop, make_inventory())
    assert loop.stats.errors >= 1
    assert apiserver.node(NODE)["metadata"]["labels"]["nodeagent.io/kvm"] == "true"


def test_node_deleted_and_recreated_gets_its_labels_again(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    loop = started(make_loop, make_inventory())
    apiserver.delete_node(NODE)
    wait_for(lambda: loop.observed is None, 3)
    apiserver.add_node(NODE)
    wait_for(lambda: apiserver.node(NODE)["metadata"]["labels"].get("nodeagent.io/kvm") == "true", 3)


def test_stop_is_prompt_with_a_long_watch_open(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    loop = started(make_loop, make_inventory(), config=replace(FAST, watch_timeout=300, resync_period=300))
    wait_for(lambda: apiserver.count(verb="watch") >= 1, 3)
    began = time.monotonic()
    loop.stop(timeout=5)
    assert time.monotonic() - began < 1.0
    assert not loop.running


def test_synced_tracks_the_latest_desired_state(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    apiserver.latency = 0.1
    loop = started(make_loop, make_inventory())
    loop.update(with_ksm(make_inventory(), 1))
    assert not loop.synced  # not yet written
    assert loop.wait_synced(3)


def test_not_synced_before_start_or_without_a_desired_state(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    loop = make_loop()
    assert not loop.synced
    loop.start()
    assert not loop.wait_synced(0.3)
    assert apiserver.count(writes=True) == 0


def test_prep_report_becomes_an_event(apiserver: ApiServer, make_loop: Any) -> None:
    apiserver.add_node(NODE)
    loop = started(make_loop, make_inventory())
    loop.report_prep(True, "hugepages 1Gi x 16 on node 0; reboot required for isolcpus")
    wait_for(lambda: apiserver.events, 3)
    assert apiserver.events[0]["reason"] == "PrepApplied"
