"""Connecting: kubeconfig or in-cluster, the node name, no hidden retries, the lazy import."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from nodeagent.k8s.client import ApiError, K8sConfigError, connect, resolve_node_name
from tests.k8s.cluster import ApiServer

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


def test_importing_the_package_does_not_load_the_client() -> None:
    code = ("import sys, nodeagent.k8s, nodeagent.k8s.loop, nodeagent.commands.labels; "
            "print('kubernetes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
