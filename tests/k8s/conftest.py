"""Fixtures for the Kubernetes tests: a kubeconfig for the local API server (tests/conftest.py), clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.apiserver import FakeApiServer, write_kubeconfig

NODE = "node-a"


@pytest.fixture
def kubeconfig(apiserver: FakeApiServer, tmp_path: Path) -> str:
    """A kubeconfig file for the local API server (what ``--kubeconfig`` is given)."""
    return write_kubeconfig(apiserver, tmp_path / "kubeconfig")


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
