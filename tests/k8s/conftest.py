"""Fixtures for the Kubernetes tests: the local API server, a kubeconfig for it, clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.apiserver import FakeApiServer

NODE = "node-a"


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kubeconfig(apiserver: FakeApiServer, tmp_path: Path) -> str:
    """A kubeconfig file for the local API server (what ``--kubeconfig`` is given)."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "local", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "agent", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "local", "user": "agent"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def kube_api(kubeconfig: str) -> Iterator[Any]:
    """nodeagent's client, with timeouts short enough for tests."""
    from nodeagent.k8s.client import Timeouts, connect

    api = connect(kubeconfig, timeouts=Timeouts(connect=1.0, request=1.0))
    yield api
    api.close()


@pytest.fixture
def other_client(kubeconfig: str) -> Iterator[Any]:
    """The real kubernetes client as *someone else* (an admin, another controller) uses it."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    yield client.CoreV1Api(api_client)
    api_client.close()
