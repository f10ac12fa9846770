"""Fixtures for the daemon's tests: ``nodeagent serve`` as a real subprocess, the local API
server, private fixture roots and profile directories.

Every process started here is stopped at teardown (SIGTERM, then SIGKILL after a bound), and
every wait is bounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.k8s.apiserver import FakeApiServer, write_kubeconfig
from tests.support.serve import PROFILES, ServeProcess, configmap_dir


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
def kubeconfig(apiserver: FakeApiServer, tmp_path: Path) -> str:
    return write_kubeconfig(apiserver, tmp_path / "kubeconfig")


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    """A private copy of the example profiles (daemonset/profiles), as the ConfigMap mounts them."""
    return configmap_dir(tmp_path / "profiles", {p.name: p.read_text() for p in sorted(PROFILES.glob("*.yaml"))})


