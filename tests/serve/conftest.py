"""Fixtures for the daemon's tests: ``nodeagent serve`` as a real subprocess, the real API
server (tests/conftest.py), private fixture roots and profile directories.

Every process started here is stopped at teardown (SIGTERM, then SIGKILL after a bound), and
every wait is bounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.k8s.cluster import ApiServer
from tests.support.serve import NODE, PROFILES, ServeProcess, configmap_dir


@pytest.fixture
def serve_factory() -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(root: Path, *args: str, env: dict[str, str] | None = None, module: str = "nodeagent") -> ServeProcess:
        process = ServeProcess(root, list(args), env=env, module=module)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                process.stop(10)
            process.kill()


@pytest.fixture
def kubeconfig(apiserver: ApiServer, tmp_path: Path) -> str:
    """The agent on NODE as its own ServiceAccount, via the fault proxy in front of the real server."""
    return apiserver.agent_kubeconfig(tmp_path / "kubeconfig", NODE)


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    """A private copy of the example profiles (daemonset/profiles), as the ConfigMap mounts them."""
    return configmap_dir(tmp_path / "profiles", {p.name: p.read_text() for p in sorted(PROFILES.glob("*.yaml"))})


