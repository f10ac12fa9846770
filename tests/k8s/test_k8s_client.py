"""Connecting: kubeconfig or in-cluster, the node name, no hidden retries, the lazy import."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from nodeagent.k8s.client import ApiError, K8sConfigError, connect, resolve_node_name
from tests.k8s.cluster import ApiServer
from tests.k8s.conftest import REQUEST_TIMEOUT

pytestmark = pytest.mark.k8s


def test_node_name_from_flag_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "from-env")
    assert resolve_node_name("from-flag") == "from-flag"
    assert resolve_node_name(None) == "from-env"
    monkeypatch.delenv("NODE_NAME")
    with pytest.raises(K8sConfigError, match="NODE_NAME"):
        resolve_node_name(None)


def test_in_cluster_config_when_running_in_a_pod(monkeypatch: pytest.MonkeyPatch, apiserver: ApiServer) -> None:
    from kubernetes import config

    calls: list[Any] = []

    def fake_incluster(client_configuration: Any = None, **_: Any) -> None:  # what the pod's files would give
        calls.append(client_configuration)
        client_configuration.host = apiserver.url
        client_configuration.ssl_ca_cert = str(apiserver.plane.pki / "ca.crt")
        client_configuration.api_key = {"authorization": "Bearer " + apiserver.plane.token("nodeagent", "nodeagent",
                                                                                            node="n1")}

    monkeypatch.setattr(config, "load_incluster_config", fake_incluster)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    apiserver.add_node("n1")
    api = connect()
    assert api.get_node("n1")["metadata"]["name"] == "n1"
    assert len(calls) == 1


def test_explicit_kubeconfig_wins_over_in_cluster(monkeypatch: pytest.MonkeyPatch, kubeconfig: str,
                                                  apiserver: ApiServer) -> None:
    from kubernetes import config

    monkeypatch.setattr(config, "load_incluster_config", lambda **_: pytest.fail("in-cluster config used"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    apiserver.add_node("n1")
    assert connect(kubeconfig).get_node("n1")["metadata"]["name"] == "n1"


def test_unusable_config_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: [a, kubeconfig")
    with pytest.raises(K8sConfigError, match="kubeconfig"):
        connect(str(bad))


def test_no_hidden_retries(apiserver: ApiServer, kube_api: Any) -> None:
    """urllib3's retries are off: a dropped connection costs one request, and the publisher decides."""
    apiserver.add_node("n1")
    apiserver.inject(drop=True, verb="get")
    with pytest.raises(ApiError):
        kube_api.get_node("n1")
    assert apiserver.count(verb="get") == 1


def test_transient_failures_are_retryable_errors(apiserver: ApiServer, kube_api: Any) -> None:
    """5xx, a dropped connection and a timeout each end one call as a retryable ApiError (the publisher
    backs off on those); only the 5xx carries a status."""
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
    assert kube_api.get_node("n1")["metadata"]["name"] == "n1"  # faults spent: answered again
    assert apiserver.count(verb="get", resource="nodes", status=503) == 2
    assert apiserver.count(writes=True) == 0


def test_watch_node_resumes_from_a_resource_version_and_raises_expiry(apiserver: ApiServer, kube_api: Any) -> None:
    """watch_node sees only its Node's changes after the given resourceVersion, ends when the server ends
    the watch (timeoutSeconds), and turns the 410 ERROR event of a compacted resourceVersion into ApiError."""
    start = apiserver.add_node("n1")["metadata"]["resourceVersion"]
    apiserver.add_node("other")
    apiserver.mutate_node("n1", lambda o: o["metadata"]["labels"].update(a="1"))
    later = threading.Timer(0.2, lambda: apiserver.mutate_node("n1", lambda o: o["metadata"]["labels"].update(b="2")))
    later.start()
    seen = [(event["type"], dict(event["object"]["metadata"].get("labels") or {}))
            for event in kube_api.watch_node("n1", start, 2)]
    later.join()
    changes = [s for s in seen if s[0] != "BOOKMARK"]  # the real server may add a bookmark before the timeout
    assert [s[0] for s in changes] == ["MODIFIED", "MODIFIED"]  # the other node's ADDED is filtered out
    assert changes[-1][1]["b"] == "2"
    apiserver.compact()
    with pytest.raises(ApiError) as caught:
        list(kube_api.watch_node("n1", start, 1))
    assert caught.value.status == 410


def test_importing_the_package_does_not_load_the_client() -> None:
    code = ("import sys, nodeagent.k8s, nodeagent.k8s.loop, nodeagent.commands.labels; "
            "print('kubernetes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
