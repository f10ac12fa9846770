"""Shared test fixtures: generated fixture hosts and Hosts rooted in them.

Fixture host trees are generated from ``fixtures/specs/*.yaml`` once per test session (they are
never committed); a test that writes into a tree asks for ``fresh_host_tree`` to get its own copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from nodeagent.host import Host
from tests.support.hosts import CAPTURED_HOSTS, CAPTURES

if TYPE_CHECKING:
    from tests.k8s.cluster import ApiServer, ControlPlane

# Property tests and fuzzers: CI runs a fixed, bounded budget with a fixed seed (a failure is
# reproducible from the log); `HYPOTHESIS_PROFILE=fuzz` runs far more examples locally. No
# deadline: a loaded machine must not turn a slow example into a failure (no timed assertions).
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, database=None,
                          print_blob=True)
settings.register_profile("fuzz", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def host_trees(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Build (once per session) and return the read-only tree of a named fixture host.

    Names of ``fixtures/specs/*.yaml`` are generated; names of ``fixtures/captures/*.tar.gz``
    (real hosts packed by ``nodeagent capture``) are unpacked.
    """
    import tarfile

    from fixtures.hostgen import build_host

    built: dict[str, Path] = {}

    def tree(name: str) -> Path:
        if name not in built:
            dest = tmp_path_factory.mktemp(name)
            if name in CAPTURED_HOSTS:
                from nodeagent.capture import extract, unpacked_root

                with tarfile.open(CAPTURES / f"{name}.tar.gz") as archive:
                    extract(archive, str(dest))
                built[name] = Path(unpacked_root(str(dest)))
            else:
                built[name] = build_host(name, dest)
        return built[name]

    return tree


@pytest.fixture
def fresh_host_tree(host_trees: Callable[[str], Path], tmp_path: Path) -> Callable[[str], Path]:
    """A private, writable copy of a fixture host tree (symlinks kept as symlinks)."""

    def tree(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(host_trees(name), dest, symlinks=True)
        return dest

    return tree


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One real control plane per test session (tests/k8s/control-plane up: etcd, kube-apiserver,
    kube-scheduler, built once into ~/.cache/nodeagent-k8s), with daemonset/ applied server-side."""
    from tests.k8s.cluster import session_control_plane

    plane = session_control_plane(tmp_path_factory.mktemp("control-plane"))
    yield plane
    plane.down()


@pytest.fixture
def apiserver(control_plane: ControlPlane) -> Iterator[ApiServer]:
    """The real API server behind a fault-injecting proxy; no Node, NRT or Event left by another test."""
    from tests.k8s.cluster import ApiServer
    from tests.k8s.faultproxy import FaultProxy

    control_plane.reset()
    pki = control_plane.pki
    with FaultProxy(control_plane.server, ca=pki / "ca.crt", cert=pki / "apiserver.crt",
                    key=pki / "apiserver.key") as proxy:
        yield ApiServer(control_plane, proxy)


@pytest.fixture
def fixture_host(host_trees: Callable[[str], Path]) -> Callable[[str], Host]:
    """A Host rooted in a (shared, read-only) fixture tree."""
    return lambda name: Host(str(host_trees(name)))


# Skips that are honest on any machine the test command prepares: there is no GPU to compare with.
ALLOWED_SKIPS = ("nvidia-smi",)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run must not look green when it tested nothing, or (strict mode) skipped a real peer.

    tests/run.sh installs every peer (libvirtd, Prometheus, promtool, systemd-analyze, …) and sets
    NODEAGENT_STRICT_SKIPS=1: a test that then skips for a missing peer means an install step is
    missing, and fails the run instead of hiding it.
    """
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    passed = len(reporter.stats.get("passed", []))
    if exitstatus == 0 and passed == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
        return
    if os.environ.get("NODEAGENT_STRICT_SKIPS") == "1":
        unexpected = [r for r in reporter.stats.get("skipped", [])
                      if not any(allowed in str(r.longrepr) for allowed in ALLOWED_SKIPS)]
        if unexpected:
            reporter.write_line(f"strict skips: {len(unexpected)} test(s) skipped for a missing peer:", red=True)
            for report in unexpected:
                reporter.write_line(f"  {report.nodeid}: {report.longrepr}", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
