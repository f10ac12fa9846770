"""The emulated API server (tests/k8s/apiserver.py, still used by bench/serve/bench_serve.py) behaves as a
real one would, through the real kubernetes client. Every other k8s test runs against the real
control plane; this module alone swaps the fixtures back to the emulation."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.k8s.apiserver import FakeApiServer, json_patch, merge_patch, strategic_merge_patch, write_kubeconfig
from tests.k8s.conftest import REQUEST_TIMEOUT

pytestmark = pytest.mark.k8s

NRT = ("topology.node.k8s.io", "v1alpha2", "noderesourcetopologies")


@pytest.fixture
def apiserver() -> Any:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kubeconfig(apiserver: FakeApiServer, tmp_path: Any) -> str:
    return write_kubeconfig(apiserver, tmp_path / "kubeconfig")


@pytest.fixture
def admin_kubeconfig(kubeconfig: str) -> str:
    return kubeconfig


def labels_of(api: Any, name: str = "n1") -> dict[str, str]:
    return dict(api.read_node(name).metadata.labels or {})


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/merge-patch+json", {"metadata": {"labels": {"a": None, "b": "2"}}}),
    ("application/strategic-merge-patch+json", {"metadata": {"labels": {"a": None, "b": "2"}}}),
    ("application/json-patch+json", [{"op": "remove", "path": "/metadata/labels/a"},
                                     {"op": "add", "path": "/metadata/labels/b", "value": "2"}]),
])
def test_patch_flavours(apiserver: FakeApiServer, other_client: Any, content_type: str, body: Any) -> None:
    apiserver.add_node("n1", labels={"a": "1", "keep": "k"})
    other_client.patch_node("n1", body, _content_type=content_type)
    assert labels_of(other_client) == {"b": "2", "keep": "k"}
    assert [r.content_type for r in apiserver.requests if r.verb == "patch"] == [content_type]


def test_json_patch_escapes_slashes_in_label_keys(apiserver: FakeApiServer, other_client: Any) -> None:
    apiserver.add_node("n1", labels={"nodeagent.io/kvm": "true"})
    other_client.patch_node("n1", [{"op": "remove", "path": "/metadata/labels/nodeagent.io~1kvm"}],
                            _content_type="application/json-patch+json")
    assert labels_of(other_client) == {}


def test_stale_resource_version_is_a_409(apiserver: FakeApiServer, other_client: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    node = apiserver.add_node("n1")
    stale = node["metadata"]["resourceVersion"]
    apiserver.heartbeat("n1")
    with pytest.raises(ApiException) as caught:
        other_client.patch_node("n1", {"metadata": {"resourceVersion": stale, "labels": {"x": "y"}}},
                                _content_type="application/merge-patch+json")
    assert caught.value.status == 409
    fresh = apiserver.node("n1")["metadata"]["resourceVersion"]
    other_client.patch_node("n1", {"metadata": {"resourceVersion": fresh, "labels": {"x": "y"}}},
                            _content_type="application/merge-patch+json")
    assert labels_of(other_client)["x"] == "y"


def test_no_op_patch_keeps_the_resource_version(apiserver: FakeApiServer, other_client: Any) -> None:
    node = apiserver.add_node("n1", labels={"a": "1"})
    other_client.patch_node("n1", {"metadata": {"labels": {"a": "1"}}}, _content_type="application/merge-patch+json")
    assert apiserver.node("n1")["metadata"]["resourceVersion"] == node["metadata"]["resourceVersion"]


def test_watch_resumes_from_a_resource_version_and_expires(apiserver: FakeApiServer, kube_api: Any) -> None:
    from nodeagent.k8s.client import ApiError

    start = apiserver.add_node("n1")["metadata"]["resourceVersion"]
    apiserver.add_node("other")
    apiserver.mutate_node("n1", lambda o: o["metadata"]["labels"].update(a="1"))
    threading.Timer(0.2, lambda: apiserver.mutate_node("n1", lambda o: o["metadata"]["labels"].update(b="2"))).start()
    seen = []
    began = time.monotonic()
    for event in kube_api.watch_node("n1", start, 1):
        seen.append((event["type"], dict(event["object"]["metadata"]["labels"])))
    assert 0.9 < time.monotonic() - began < 3  # ended by the server's timeoutSeconds
    assert [s[0] for s in seen] == ["MODIFIED", "MODIFIED"]  # the other node's ADDED is filtered out
    assert seen[-1][1]["b"] == "2"
    apiserver.compact()
    with pytest.raises(ApiError) as caught:
        list(kube_api.watch_node("n1", start, 1))
    assert caught.value.status == 410


def test_watch_bookmarks(apiserver: FakeApiServer, kube_api: Any) -> None:
    rv = apiserver.add_node("n1")["metadata"]["resourceVersion"]
    apiserver.bookmark_interval = 0.1
    types = [e["type"] for e in kube_api.watch_node("n1", rv, 1)]
    assert types and set(types) == {"BOOKMARK"}


def test_noderesourcetopology_crud(apiserver: FakeApiServer, kubeconfig: str) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    custom: Any = client.CustomObjectsApi(client.ApiClient(configuration))
    body = {"apiVersion": "topology.node.k8s.io/v1alpha2", "kind": "NodeResourceTopology",
            "metadata": {"name": "n1"}, "zones": []}
    created = custom.create_cluster_custom_object(*NRT, body)
    with pytest.raises(ApiException) as exists:
        custom.create_cluster_custom_object(*NRT, body)
    assert exists.value.status == 409
    got = custom.get_cluster_custom_object(*NRT, "n1")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ApiException) as no_rv:
        custom.replace_cluster_custom_object(*NRT, "n1", {**body, "zones": [{"name": "node-0", "type": "Node"}]})
    assert no_rv.value.status == 422
    replaced = custom.replace_cluster_custom_object(
        *NRT, "n1", {**body, "metadata": {"name": "n1", "resourceVersion": got["metadata"]["resourceVersion"]},
                     "zones": [{"name": "node-0", "type": "Node"}]})
    with pytest.raises(ApiException) as stale:
        custom.replace_cluster_custom_object(*NRT, "n1", {**body, "metadata": {
            "name": "n1", "resourceVersion": got["metadata"]["resourceVersion"]}})
    assert stale.value.status == 409
    assert len(custom.list_cluster_custom_object(*NRT)["items"]) == 1
    custom.delete_cluster_custom_object(*NRT, "n1")
    with pytest.raises(ApiException) as gone:
        custom.get_cluster_custom_object(*NRT, "n1")
    assert gone.value.status == 404
    assert replaced["zones"] == [{"name": "node-0", "type": "Node"}]
    apiserver.crd_installed = False
    with pytest.raises(ApiException) as no_crd:
        custom.create_cluster_custom_object(*NRT, body)
    assert no_crd.value.status == 404


def test_events_create(apiserver: FakeApiServer, other_client: Any) -> None:
    other_client.create_namespaced_event("default", {
        "metadata": {"name": "n1.1"}, "involvedObject": {"kind": "Node", "name": "n1"}, "reason": "R", "message": "m"})
    assert apiserver.events[0]["reason"] == "R" and apiserver.events[0]["metadata"]["namespace"] == "default"


def test_faults_latency_and_counting(apiserver: FakeApiServer, kube_api: Any) -> None:
    from nodeagent.k8s.client import ApiError

    apiserver.add_node("n1")
    apiserver.inject(status=503, verb="get", times=2)
    apiserver.inject(drop=True, verb="get")
    apiserver.inject(delay=REQUEST_TIMEOUT + 0.5, verb="get")  # longer than the client timeout
    statuses = []
    for _ in range(4):
        with pytest.raises(ApiError) as caught:
            kube_api.get_node("n1")
        assert caught.value.retryable
        statuses.append(caught.value.status)
    assert statuses == [503, 503, None, None]
    apiserver.latency = 0.2
    began = time.monotonic()
    kube_api.get_node("n1")
    assert time.monotonic() - began >= 0.2
    assert apiserver.count(verb="get", resource="nodes", status=503) == 2
    assert apiserver.count(writes=True) == 0


def test_patch_semantics_units() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None}, "d": [1]}) == {"a": {"c": 2}, "d": [1]}
    node = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]},
            "spec": {"taints": [{"key": "a"}]}}
    merged = strategic_merge_patch(node, {"status": {"conditions": [{"type": "X", "status": "True"}]},
                                          "spec": {"taints": [{"key": "b"}]}})
    assert merged["status"]["conditions"][1]["status"] == "True" and len(merged["status"]["conditions"]) == 2
    assert merged["spec"]["taints"] == [{"key": "b"}]  # taints have no merge key: replaced
    assert strategic_merge_patch({"m": {"a": 1}}, {"m": {"$patch": "replace", "b": 2}}) == {"m": {"b": 2}}
    doc = json_patch({"a": {"x": 1}, "l": [1, 2]}, [
        {"op": "test", "path": "/a/x", "value": 1}, {"op": "copy", "from": "/a/x", "path": "/b"},
        {"op": "move", "from": "/l/0", "path": "/l/-"}, {"op": "replace", "path": "/a/x", "value": 5}])
    assert doc == {"a": {"x": 5}, "l": [2, 1], "b": 1}
