"""Fixtures for the Kubernetes tests: kubeconfigs for the real API server (through the fault proxy
of tests/conftest.py's ``apiserver``), the agent's client and someone else's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.cluster import ApiServer

NODE = "node-a"
#: The agent's request timeout in these tests: short, yet above what a busy 2-core CI machine's real
#: API server takes to answer (the fault proxy's delays exceed it on purpose).
REQUEST_TIMEOUT = 2.0


@pytest.fixture
def kubeconfig(apiserver: ApiServer, tmp_path: Path) -> str:
    """The agent on NODE, as its own ServiceAccount (token bound to its pod on NODE), via the proxy."""
    return apiserver.plane.agent_kubeconfig(tmp_path / "kubeconfig", NODE, server=apiserver.url)


@pytest.fixture
def admin_kubeconfig(apiserver: ApiServer, tmp_path: Path) -> str:
    """Someone else (an operator, another controller): cluster-admin, via the proxy."""
    return apiserver.plane.admin_kubeconfig(tmp_path / "admin-kubeconfig", server=apiserver.url)


@pytest.fixture
def kube_api(kubeconfig: str) -> Iterator[Any]:
    """nodeagent's client, with timeouts short enough for tests."""
    from nodeagent.k8s.client import Timeouts, connect

    api = connect(kubeconfig, timeouts=Timeouts(connect=2.0, request=REQUEST_TIMEOUT))
    yield api
    api.close()


@pytest.fixture
def other_client(admin_kubeconfig: str) -> Iterator[Any]:
    """The real kubernetes client as *someone else* (an admin, another controller) uses it."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=admin_kubeconfig, client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    yield client.CoreV1Api(api_client)
    api_client.close()
