"""Fixtures for the metrics tests: real peers (libvirtd + QEMU, libvirt's test driver, Prometheus)
started and cleaned up here (the peers themselves are in tests.support.libvirt and
tests.support.prometheus; reading an exposition back is tests.support.exposition).

Real peers are started only by the tests that ask for them, and only when the machine has them:
a machine without libvirtd, QEMU or /dev/kvm skips those tests with the reason (tests/run.sh
installs the Debian packages named in tests/system-packages.txt, so CI has them all).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.inventory import Inventory
from tests.support.libvirt import (
    GUEST_XML,
    TEST_DOMAIN_PREFIX,
    Guest,
    Libvirtd,
    LibvirtTestDriver,
    kvm_for_qemu,
    libvirt_module,
    numa_node_of_cpu,
    pid_alive,
    remove_stale_guests,
)
from tests.support.prometheus import PrometheusServer

# --- fixture hosts -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fixture_inventory(host_trees: Callable[[str], Path]) -> Callable[[str], Inventory]:
    """The Inventory of a generated fixture host (discovered once per session)."""
    pytest.importorskip("fixtures.hostgen", reason="fixture host generator (fixtures/hostgen.py) not available")
    from nodeagent.discover import discover
    from nodeagent.host import Host

    cache: dict[str, Inventory] = {}

    def get(name: str) -> Inventory:
        if name not in cache:
            cache[name] = discover(Host(str(host_trees(name))))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def fixture_spec() -> Callable[[str], dict[str, Any]]:
    """The YAML spec a fixture host is generated from: the independent source of expected values."""
    import yaml

    specs = Path(__file__).resolve().parents[2] / "fixtures" / "specs"

    def get(name: str) -> dict[str, Any]:
        return yaml.safe_load((specs / f"{name}.yaml").read_text())

    return get


# --- libvirt's test driver -----------------------------------------------------------------


@pytest.fixture
def test_driver() -> Iterator[LibvirtTestDriver]:
    driver = LibvirtTestDriver()
    try:
        yield driver
    finally:
        driver.close()


# --- a real libvirtd with a real QEMU/KVM guest ----------------------------------------------


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[Libvirtd]:
    """A running system libvirtd (and virtlogd) with QEMU able to use KVM."""
    libvirt_module()
    for tool in ("libvirtd", "virtlogd", "qemu-system-x86_64"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed (see tests/system-packages.txt)")
    if os.geteuid() != 0:
        pytest.skip("the system libvirtd needs root")
    if not Path("/dev/kvm").exists():
        pytest.skip("/dev/kvm is missing: no KVM on this machine")
    undo_kvm = kvm_for_qemu()
    daemon = Libvirtd()
    daemon.started_here = daemon.pid is None
    daemon.start()
    remove_stale_guests(daemon.uri)
    try:
        yield daemon
    finally:
        remove_stale_guests(daemon.uri)
        if daemon.started_here:
            daemon.stop()
        if daemon.virtlogd_started_here and (virtlogd := pid_alive("/run/virtlogd.pid")) is not None:
            os.kill(virtlogd, 15)
        undo_kvm()


@pytest.fixture(scope="session")
def guest(libvirtd: Libvirtd) -> Iterator[Guest]:
    """A running guest, destroyed at the end of the session (transient: nothing stays defined).

    Its vCPU and emulator threads are pinned to one CPU and its memory bound to that CPU's NUMA
    node, so it is NUMA-aligned by construction on any host.
    """
    libvirt = libvirt_module()
    suffix = uuid.uuid4().hex[:6]
    namespace, vm_name = f"{TEST_DOMAIN_PREFIX}ns", f"guest-{suffix}"  # KubeVirt's <namespace>_<name>
    name = f"{namespace}_{vm_name}"
    workdir = tempfile.mkdtemp(prefix="natest-disk-")
    os.chmod(workdir, 0o755)  # QEMU runs as libvirt-qemu and must reach the image
    disk = os.path.join(workdir, "disk.img")
    with open(disk, "wb") as handle:
        handle.truncate(1 << 20)
    pinned_cpu = 0
    tap = f"natap{suffix}"
    conn = libvirt.open(libvirtd.uri)
    xml = GUEST_XML.format(name=name, uid=uuid.uuid4(), pin=pinned_cpu, node=numa_node_of_cpu(pinned_cpu),
                           disk=disk, tap=tap)
    try:
        dom = conn.createXML(xml, 0)
        uuid_string = dom.UUIDString()
    finally:
        conn.close()
    try:
        yield Guest(name, namespace, vm_name, uuid_string, pinned_cpu, disk, tap)
    finally:
        conn = libvirt.open(libvirtd.uri)  # a fresh connection: tests may have restarted libvirtd
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByUUIDString(uuid_string).destroy()
        conn.close()
        shutil.rmtree(workdir, ignore_errors=True)


# --- Prometheus ----------------------------------------------------------------------------


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], PrometheusServer]]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (see tests/system-packages.txt)")
    started: list[PrometheusServer] = []

    def start(targets: dict[str, str]) -> PrometheusServer:
        server = PrometheusServer(targets, tmp_path)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
