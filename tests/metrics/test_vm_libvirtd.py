"""The VM collector against a real libvirtd running a real QEMU/KVM guest on this machine."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.metrics import MetricsOptions, NodeMetrics, build_metrics
from nodeagent.sources.libvirt_source import LibvirtPool, LibvirtSource
from tests.support.exposition import Exposition, scrape
from tests.support.libvirt import Guest, Libvirtd

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

MIB = 1 << 20


@pytest.fixture(scope="module")
def live_inventory() -> Inventory:
    return discover(Host("/"))


@pytest.fixture
def live_metrics(libvirtd: Libvirtd, guest: Guest, live_inventory: Inventory) -> Iterator[NodeMetrics]:
    options = MetricsOptions(libvirt_uris=[libvirtd.uri], kubevirt=False, nvml=False, process=False,
                             placement_refresh_s=0)
    node_metrics = build_metrics(lambda: live_inventory, Host("/"), options)
    try:
        yield node_metrics
    finally:
        node_metrics.close()


def _poll(node_metrics: NodeMetrics, check: Any, timeout_s: float = 30.0) -> Exposition:
    """Scrape until ``check(exposition)`` holds (a guest's counters move in its own time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        exposition = scrape(node_metrics)
        if check(exposition) or time.monotonic() > deadline:
            return exposition
        time.sleep(0.5)


def _proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def test_real_guest_identity_and_memory(live_metrics: NodeMetrics, guest: Guest) -> None:
    exposition = scrape(live_metrics)
    assert exposition.value("nodeagent_collector_up", collector="vm") == 1
    (info,) = exposition.get("nodeagent_vm_info", domain=guest.name)
    assert info.labels == {"domain": guest.name, "namespace": guest.namespace, "name": guest.vm_name,
                           "uuid": guest.uuid.lower()}
    assert exposition.value("nodeagent_vm_state", domain=guest.name, state="running") == 1
    assert exposition.value("nodeagent_vm_vcpus", domain=guest.name) == 1
    assert exposition.value("nodeagent_vm_memory_bytes", domain=guest.name, state="actual") == 64 * MIB
    assert exposition.value("nodeagent_vm_memory_bytes", domain=guest.name, state="maximum") == 64 * MIB
    rss = exposition.value("nodeagent_vm_memory_bytes", domain=guest.name, state="rss")
    host_rss = _proc_status_kib(guest.pid, "VmRSS") * 1024
    assert rss > 0 and abs(rss - host_rss) < 0.25 * host_rss  # libvirt's rss is the QEMU process's VmRSS


def test_real_guest_cpu_time_grows(live_metrics: NodeMetrics, guest: Guest) -> None:
    first = scrape(live_metrics).value("nodeagent_vm_cpu_seconds_total", domain=guest.name)
    later = _poll(live_metrics, lambda e: e.value("nodeagent_vm_cpu_seconds_total", domain=guest.name) > first)
    assert later.value("nodeagent_vm_cpu_seconds_total", domain=guest.name) > first > 0
    assert later.value("nodeagent_vm_vcpu_seconds_total", domain=guest.name, vcpu="0") > 0
    assert later.value("nodeagent_vm_vcpu_wait_seconds_total", domain=guest.name, vcpu="0") >= 0
    assert later.types["nodeagent_vm_cpu_seconds"] == "counter"


def test_real_guest_block_and_network_counters(live_metrics: NodeMetrics, guest: Guest) -> None:
    # SeaBIOS reads the (empty) disk's boot sector while looking for something to boot
    # (a NOWAIT stats record may leave the block stats out of one scrape: that scrape just doesn't count)
    exposition = _poll(live_metrics, lambda e: any(s.value > 0 for s in e.get(
        "nodeagent_vm_block_bytes_total", domain=guest.name, device="vda", direction="read")))
    assert exposition.value("nodeagent_vm_block_bytes_total", domain=guest.name, device="vda", direction="read") >= 512
    assert exposition.value("nodeagent_vm_block_requests_total", domain=guest.name, device="vda",
                            direction="read") >= 1
    assert exposition.value("nodeagent_vm_block_bytes_total", domain=guest.name, device="vda", direction="write") >= 0
    for direction in ("receive", "transmit"):
        assert exposition.value("nodeagent_vm_network_bytes_total", domain=guest.name, interface=guest.tap,
                                direction=direction) >= 0


def test_real_guest_numa_placement(live_metrics: NodeMetrics, guest: Guest, live_inventory: Inventory) -> None:
    exposition = scrape(live_metrics)
    per_node = {s.labels["numa_node"]: s.value for s in exposition.get("nodeagent_vm_numa_memory_bytes",
                                                                         domain=guest.name)}
    assert per_node and set(per_node) <= {str(n.id) for n in live_inventory.numa}
    total = sum(per_node.values())
    # independent bounds from the kernel's own accounting of the same process
    anon = (_proc_status_kib(guest.pid, "RssAnon") + _proc_status_kib(guest.pid, "RssShmem")) * 1024
    assert 0.3 * anon < total <= 1.05 * anon + _proc_status_kib(guest.pid, "HugetlbPages") * 1024
    # pinned to one CPU with memory bound to that CPU's node: aligned by construction
    assert exposition.value("nodeagent_vm_numa_aligned", domain=guest.name) == 1
    online = live_inventory.cpu.online
    assert exposition.value("nodeagent_vm_vcpus_pinned", domain=guest.name) == (1 if len(online) > 1 else 0)
    assert exposition.value("nodeagent_vm_hugepages_backed", domain=guest.name) == 0


def test_libvirtd_restart_reconnects(libvirtd: Libvirtd, guest: Guest, live_inventory: Inventory) -> None:
    source = LibvirtSource(libvirtd.uri)
    node_metrics = build_metrics(lambda: live_inventory, Host("/"),
                                 MetricsOptions(nvml=False, process=False), libvirt=[source])
    try:
        assert scrape(node_metrics).get("nodeagent_vm_info", domain=guest.name)
        libvirtd.restart()  # guests keep running; the old connection is dead
        exposition = scrape(node_metrics)
        assert exposition.value("nodeagent_collector_up", collector="vm") == 1
        assert exposition.get("nodeagent_vm_info", domain=guest.name)
        assert source.connects == 2
        assert scrape(node_metrics).value("nodeagent_collector_up", collector="vm") == 1
        assert source.connects == 2  # and the new connection is kept
    finally:
        node_metrics.close()


def test_libvirtd_down_then_back(libvirtd: Libvirtd, guest: Guest, live_inventory: Inventory) -> None:
    source = LibvirtSource(libvirtd.uri)
    node_metrics = build_metrics(lambda: live_inventory, Host("/"),
                                 MetricsOptions(nvml=False, process=False), libvirt=[source])
    try:
        scrape(node_metrics)
        libvirtd.stop()
        try:
            exposition = scrape(node_metrics)
            assert exposition.value("nodeagent_collector_up", collector="vm") == 0
            assert exposition.value("nodeagent_collector_up", collector="capacity") == 1
        finally:
            libvirtd.restart()
        assert scrape(node_metrics).get("nodeagent_vm_info", domain=guest.name)
    finally:
        node_metrics.close()


def test_virt_launcher_sockets_are_found_and_read(libvirtd: Libvirtd, guest: Guest, live_inventory: Inventory,
                                                  tmp_path: Path) -> None:
    """A KubeVirt node: the daemon's socket sits deep below the kubelet's pod directory.

    Here the pod's socket is a link to the system daemon's read-only socket; its path is longer
    than a Unix socket address may be, which the pool must work around.
    """
    pods = tmp_path / "var-lib-kubelet-pods"
    runtime = pods / "6f1c2a8e-0d4b-4c55-9a57-2b9c1e7f3d10" / "volumes" / "kubernetes.io~empty-dir" / "libvirt-runtime"
    runtime.mkdir(parents=True)
    system_socket = "/run/libvirt/libvirt-sock-ro"
    (runtime / "libvirt-sock").symlink_to(system_socket)
    assert len(str(runtime / "libvirt-sock")) > 107  # too long for sun_path
    (pods / "not-a-launcher").mkdir()
    pool = LibvirtPool([], host=Host("/"), kubevirt=True, pods_dir=str(pods))
    node_metrics = build_metrics(lambda: live_inventory, Host("/"), MetricsOptions(nvml=False, process=False),
                                 libvirt=[])
    try:
        (source,) = pool.sources()
        assert source.name == str(runtime / "libvirt-sock")
        names = {d.name for d in source.domains()}
        assert guest.name in names
        # the pod goes away: its source is closed and its link removed
        (runtime / "libvirt-sock").unlink()
        assert pool.sources() == []
    finally:
        pool.close()
        node_metrics.close()


def test_unix_socket_limit_is_real(tmp_path: Path) -> None:
    """The reason for the short links above: binding a path over 107 bytes fails."""
    long_dir = tmp_path / ("d" * 120)
    long_dir.mkdir()
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(OSError):
        sock.bind(os.path.join(long_dir, "s"))
