"""One-shot publishing (``nodeagent labels --publish``'s engine) against the real API server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nodeagent.k8s import desired_state, publish_once
from nodeagent.k8s.client import ApiError
from nodeagent.k8s.desired import DesiredState
from nodeagent.k8s.publisher import Publisher
from nodeagent.labels import LabelConfig, NodeTaint
from tests.k8s.cluster import ApiServer
from tests.k8s.conftest import NODE, REQUEST_TIMEOUT
from tests.support.factories import gpu_node_inventory, make_inventory

pytestmark = pytest.mark.k8s

OWNED = "nodeagent.io/owned-labels"
OWNED_TAINTS = "nodeagent.io/owned-taints"
A = "nodeagent.io/a"  # a label key the admission policy lets the agent's own account write


def desired(labels: dict[str, str], taints: tuple[NodeTaint, ...] = (), topology: Any = None) -> DesiredState:
    return DesiredState(labels=labels, taints=taints, topology=topology)


def test_first_publish_writes_once_then_nothing(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE, labels={"kubernetes.io/hostname": NODE, "team": "infra"})
    want = desired_state(gpu_node_inventory(), node_name=NODE)
    result = publish_once(kube_api, NODE, want)
    assert result.node_patched and result.topology == "created"
    node = apiserver.node(NODE)
    labels = node["metadata"]["labels"]
    assert {k: labels[k] for k in want.labels} == dict(want.labels)
    assert labels["team"] == "infra" and labels["kubernetes.io/hostname"] == NODE  # untouched
    assert node["metadata"]["annotations"][OWNED] == ",".join(sorted(want.labels))
    writes = apiserver.count(writes=True)
    assert writes == 2  # one node PATCH, one NodeResourceTopology POST

    mark = apiserver.mark()
    again = publish_once(kube_api, NODE, desired_state(gpu_node_inventory(), node_name=NODE))
    assert not again.node_patched and again.topology == "unchanged"
    assert apiserver.count(writes=True, since=mark) == 0  # zero writes when nothing changed


def test_owned_labels_removed_foreign_never_touched(apiserver: ApiServer, kube_api: Any) -> None:
    a, stale, new = A, "nodeagent.io/stale", "nodeagent.io/new"
    apiserver.add_node(NODE, labels={a: "1", stale: "s", "theirs": "t"}, annotations={OWNED: f"{a},{stale}"})
    publish_once(kube_api, NODE, desired({a: "1", new: "n"}))
    node = apiserver.node(NODE)
    assert node["metadata"]["labels"] == {a: "1", new: "n", "theirs": "t"}
    assert node["metadata"]["annotations"][OWNED] == f"{a},{new}"
    (patch,) = [r for r in apiserver.requests if r.verb == "patch"]
    assert patch.content_type == "application/merge-patch+json"


def test_taints_merged_not_replaced(apiserver: ApiServer, kube_api: Any) -> None:
    cordon = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2024-01-01T00:00:00Z"}
    apiserver.add_node(NODE, taints=[cordon, {"key": "old", "value": "x", "effect": "NoSchedule"}],
                       annotations={OWNED_TAINTS: "old:NoSchedule"})
    publish_once(kube_api, NODE, desired({A: "1"}, (NodeTaint("high-performance", "true", "NoSchedule"),)))
    node = apiserver.node(NODE)
    assert node["spec"]["taints"] == [cordon, {"key": "high-performance", "value": "true", "effect": "NoSchedule"}]
    assert node["metadata"]["annotations"][OWNED_TAINTS] == "high-performance:NoSchedule"


def test_taint_update_racing_another_writer_is_retried_and_keeps_their_taint(
        apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)

    def someone_cordons() -> None:  # between our GET and our PATCH
        apiserver.mutate_node(NODE, lambda o: o["spec"].setdefault("taints", []).append(
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}))

    apiserver.inject(verb="patch", before=someone_cordons)
    publish_once(kube_api, NODE, desired({}, (NodeTaint("hp", "true", "NoSchedule"),)))
    assert apiserver.count(verb="patch", status=409) == 1
    assert apiserver.count(verb="patch", status=200) == 1
    assert [t["key"] for t in apiserver.node(NODE)["spec"]["taints"]] == ["node.kubernetes.io/unschedulable", "hp"]


def test_5xx_and_timeouts_are_retried(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    apiserver.inject(status=500, verb="get")
    apiserver.inject(status=503, verb="patch")
    apiserver.inject(delay=REQUEST_TIMEOUT + 0.5, verb="get")  # the client gives up first
    from nodeagent.backoff import Backoff

    publisher = Publisher(kube_api, NODE)
    result = publisher.publish(desired({A: "1"}), backoff=Backoff(base=0.01, cap=0.05), deadline=10)
    assert result.attempts == 4
    assert apiserver.node(NODE)["metadata"]["labels"][A] == "1"


def test_non_retryable_errors_give_up_at_once(apiserver: ApiServer, kube_api: Any) -> None:
    with pytest.raises(ApiError) as caught:  # no such node
        publish_once(kube_api, NODE, desired({A: "1"}))
    assert caught.value.status == 404
    assert apiserver.count() == 1


def test_topology_updated_only_when_it_changes(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    inv = gpu_node_inventory()
    publisher = Publisher(kube_api, NODE)
    uid = apiserver.node(NODE)["metadata"]["uid"]
    assert publisher.sync_topology(desired_state(inv, node_name=NODE), uid) == "created"
    assert publisher.sync_topology(desired_state(inv, node_name=NODE), uid) == "unchanged"
    assert apiserver.count(resource="noderesourcetopologies") == 2  # GET (absent) + POST; the repeat is free
    nrt = apiserver.topologies[NODE]
    assert nrt["metadata"]["ownerReferences"][0]["uid"] == uid

    fewer = replace(inv, gpus=inv.gpus[1:])
    mark = apiserver.mark()
    assert publisher.sync_topology(desired_state(fewer, node_name=NODE), uid) == "updated"
    assert apiserver.count(since=mark, verb="update") == 1
    names = {r["name"] for z in apiserver.topologies[NODE]["zones"] for r in z["resources"]}
    zone0 = {r["name"] for r in apiserver.topologies[NODE]["zones"][0]["resources"]}
    assert "nvidia.com/GH100_H100_SXM5_80GB" in names and "nvidia.com/GH100_H100_SXM5_80GB" not in zone0


def test_topology_verify_rewrites_after_someone_deletes_it(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    publisher = Publisher(kube_api, NODE)
    want = desired_state(gpu_node_inventory(), node_name=NODE)
    publisher.sync_topology(want, None)
    del apiserver.topologies[NODE]
    assert publisher.sync_topology(want, None) == "unchanged"  # no request without verify
    assert publisher.sync_topology(want, None, verify=True) == "created"


def test_foreign_topology_is_left_alone(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    apiserver.topologies[NODE] = {"apiVersion": "topology.node.k8s.io/v1alpha2", "kind": "NodeResourceTopology",
                                  "metadata": {"name": NODE, "resourceVersion": "1"}, "zones": []}
    result = publish_once(kube_api, NODE, desired_state(gpu_node_inventory(), node_name=NODE))
    assert result.topology == "foreign"
    assert apiserver.topologies[NODE]["zones"] == []
    assert apiserver.count(resource="noderesourcetopologies", writes=True) == 0


def test_missing_crd_does_not_fail_label_publishing(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    apiserver.crd_installed = False
    result = publish_once(kube_api, NODE, desired_state(gpu_node_inventory(), node_name=NODE))
    assert result.node_patched and result.topology == "unavailable"


def test_readiness_change_emits_an_event_first_publication_does_not(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    inv = make_inventory()  # ready for general only
    publish_once(kube_api, NODE, desired_state(inv, node_name=NODE, topology=False))
    assert apiserver.events == []
    broken = replace(inv, kvm=replace(inv.kvm, available=False))
    publish_once(kube_api, NODE, desired_state(broken, node_name=NODE, topology=False))
    (event,) = apiserver.events
    assert event["reason"] == "WorkloadNotReady" and event["type"] == "Warning"
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": NODE,
                                       "uid": apiserver.node(NODE)["metadata"]["uid"]}
    assert "general" in event["message"] and event["metadata"]["namespace"] == "default"
    publish_once(kube_api, NODE, desired_state(inv, node_name=NODE, topology=False))
    assert [e["reason"] for e in apiserver.events] == ["WorkloadNotReady", "WorkloadReady"]


def test_prep_event(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    publish_once(kube_api, NODE, desired({A: "1"}), prep=(False, "hugepages: EBUSY on node 1; rolled back"))
    (event,) = apiserver.events
    assert (event["reason"], event["type"]) == ("PrepFailed", "Warning")
    assert event["source"] == {"component": "nodeagent", "host": NODE}


def test_event_failures_never_fail_publishing(apiserver: ApiServer, kube_api: Any) -> None:
    apiserver.add_node(NODE)
    apiserver.inject(status=403, resource="events")
    result = publish_once(kube_api, NODE, desired({A: "1"}), prep=(True, "applied"))
    assert result.node_patched and result.events_sent == 0


def test_custom_prefix_end_to_end(apiserver: ApiServer, admin_kubeconfig: str) -> None:
    """As cluster-admin: the shipped admission policy only lets the agent's own account write nodeagent.io/
    (a custom prefix needs the policy's prefixes edited too, as daemonset/README.md says)."""
    from nodeagent.k8s.client import Timeouts, connect

    kube_api = connect(admin_kubeconfig, timeouts=Timeouts(connect=2.0, request=REQUEST_TIMEOUT))
    apiserver.add_node(NODE)
    config = LabelConfig(prefix="virt.example.com", nfd_compatible=False)
    publish_once(kube_api, NODE, desired_state(make_inventory(), node_name=NODE, label_config=config, topology=False))
    meta = apiserver.node(NODE)["metadata"]
    assert "virt.example.com/owned-labels" in meta["annotations"]
    assert not [k for k in meta["labels"] if k.startswith(("nodeagent.io/", "feature.node.kubernetes.io/cpu-"))]


def test_node_annotations(apiserver: ApiServer, kubeconfig: str) -> None:
    from nodeagent.k8s import node_annotations

    apiserver.add_node(NODE, annotations={"kubevirt.io/ksm-handler-managed": "true"})
    assert node_annotations(NODE, kubeconfig) == {"kubevirt.io/ksm-handler-managed": "true"}
    # A cluster exists but the Node can't be read: an error, never "no cluster" (prep then leaves
    # KSM alone instead of fighting KubeVirt for it).
    with pytest.raises(ApiError):
        node_annotations("missing", kubeconfig)
    apiserver.inject(status=500, verb="get")
    with pytest.raises(ApiError):
        node_annotations(NODE, kubeconfig)  # one try: prep must not hang on the API
    assert node_annotations(NODE, "/nonexistent/kubeconfig") is None


def test_no_cluster_config_means_none_without_importing_the_client(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from nodeagent.k8s import node_annotations
    from nodeagent.k8s.client import cluster_config_present

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not cluster_config_present()
    assert node_annotations(NODE) is None


def test_node_annotations_pass_kubevirts_ksm_enabled_label_along(apiserver: ApiServer, kubeconfig: str) -> None:
    from nodeagent.k8s import node_annotations

    apiserver.add_node(NODE, labels={"kubevirt.io/ksm-enabled": "true", "other": "x"}, annotations={"a": "b"})
    assert node_annotations(NODE, kubeconfig) == {"a": "b", "kubevirt.io/ksm-enabled": "true"}


def test_nfd_auto_leaves_nfds_keys_on_a_node_carrying_its_annotation(apiserver: ApiServer, kube_api: Any) -> None:
    """Real API server, as the agent's ServiceAccount: NFD's annotation → no NFD-owned key is nodeagent's."""
    from nodeagent.labels import NFD_FEATURE_LABELS_ANNOTATION, label_config_for, nfd_owned_keys, parse_owned

    nfd = "feature.node.kubernetes.io"
    nfd_labels = {f"{nfd}/cpu-cpuid.AVX2": "true", f"{nfd}/cpu-hardware_multithreading": "true",
                  f"{nfd}/memory-numa": "true"}
    apiserver.add_node(NODE, labels={"kubernetes.io/hostname": NODE, **nfd_labels},
                       annotations={NFD_FEATURE_LABELS_ANNOTATION: "cpu-cpuid.AVX2,cpu-hardware_multithreading,"
                                                                   "memory-numa"})
    want = desired_state(gpu_node_inventory(), node_name=NODE, label_config=label_config_for("auto"), topology=False)
    publish_once(kube_api, NODE, want)
    meta = apiserver.node(NODE)["metadata"]
    owned = parse_owned(meta["annotations"]["nodeagent.io/owned-labels"])
    assert owned and not owned & nfd_owned_keys()
    assert {k: meta["labels"][k] for k in nfd_labels} == nfd_labels
    assert meta["labels"][f"{nfd}/numa"] == "true"  # the recipe-compatible set is still published
