"""NUMA alignment, pinning and hugepage backing: the rules, and the VM collector applying them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.metrics import MetricsOptions, build_metrics
from nodeagent.metrics.placement import (
    PlacementReader,
    ProcessPlacement,
    numa_aligned,
    numa_nodes_of,
    pinned_vcpus,
    vcpu_allowed_cpus,
)
from nodeagent.metrics.vm import VmCollector
from nodeagent.sources.libvirt_source import DomainXml
from nodeagent.sources.numa_maps import NumaMemory
from nodeagent.sources.qemu_process import VcpuThread
from tests.metrics.stubs import StubLibvirt, StubPlacement, domain
from tests.support.exposition import Exposition, scrape
from tests.support.factories import make_cpu, make_inventory

GIB = 1 << 30


def two_nodes() -> Inventory:
    """8 CPUs: 0-3 on node 0, 4-7 on node 1."""
    inv = make_inventory(cpu=make_cpu(online=list(range(8)), logical_cpus=8))
    return replace(inv, numa=[replace(inv.numa[0], id=0, cpus=[0, 1, 2, 3]),
                              replace(inv.numa[0], id=1, cpus=[4, 5, 6, 7])])


def xml(**changes: object) -> DomainXml:
    base = DomainXml(vcpus=2, vcpu_cpuset=None, vcpupins={}, hugepages=False, hostdev_pci=[], kubevirt=True)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_allowed_cpus_prefer_thread_affinity_then_xml_then_everything() -> None:
    online = list(range(8))
    threads = [VcpuThread(0, 100, [6])]
    facts = xml(vcpus=3, vcpupins={0: [1], 1: [2, 3]}, vcpu_cpuset=[4, 5])
    assert vcpu_allowed_cpus(3, facts, threads, online) == {0: [6], 1: [2, 3], 2: [4, 5]}
    assert vcpu_allowed_cpus(2, None, [], online) == {0: online, 1: online}


def test_pinned_counts_only_xml_pins_narrower_than_the_host() -> None:
    online = list(range(8))
    assert pinned_vcpus(2, xml(vcpupins={0: [1], 1: [2]}), online) == 2
    assert pinned_vcpus(2, xml(vcpupins={0: [1]}), online) == 1
    assert pinned_vcpus(2, xml(vcpu_cpuset=[0, 1, 2, 3]), online) == 2
    assert pinned_vcpus(2, xml(vcpu_cpuset=online), online) == 0  # "pinned" to everything is not pinned
    assert pinned_vcpus(2, xml(), online) == 0
    assert pinned_vcpus(2, None, online) is None


def test_alignment_tolerates_a_little_remote_memory() -> None:
    assert numa_aligned(NumaMemory({0: 16 * GIB, 1: 100 << 20}), {0}) is True  # QEMU's heap elsewhere
    assert numa_aligned(NumaMemory({0: 8 * GIB, 1: 8 * GIB}), {0}) is False
    assert numa_aligned(NumaMemory({1: 16 * GIB}), {0}) is False
    assert numa_aligned(NumaMemory({0: 8 * GIB, 1: 8 * GIB}), {0, 1}) is True  # spans nodes it may run on
    assert numa_aligned(NumaMemory({}), {0}) is None
    assert numa_aligned(NumaMemory({0: GIB}), set()) is None
    assert numa_aligned(NumaMemory({0: 90, 1: 10}), {0}, max_remote_ratio=0.05) is False
    assert numa_aligned(NumaMemory({0: 90, 1: 10}), {0}, max_remote_ratio=0.10) is True


def test_numa_nodes_of_cpus() -> None:
    inv = two_nodes()
    assert numa_nodes_of([1, 2], inv.numa) == {0}
    assert numa_nodes_of([3, 4], inv.numa) == {0, 1}
    assert numa_nodes_of([99], inv.numa) == set()


def _scrape_vm(inv: Inventory, tmp_path: Path, facts: DomainXml, placement: ProcessPlacement | None) -> Exposition:
    sample = domain("ns_vm", "u-1", xml=facts)
    stub = StubPlacement({sample.uuid: placement} if placement else {})
    vm = VmCollector(lambda: [StubLibvirt([sample])], lambda: inv, stub)  # type: ignore[list-item,arg-type]
    return scrape(build_metrics(lambda: inv, Host(str(tmp_path)), MetricsOptions(live=False, process=False),
                                extra=[vm]))


def test_a_vm_pinned_to_node_0_with_memory_on_node_1_is_not_aligned(tmp_path: Path) -> None:
    inv = two_nodes()
    placement = ProcessPlacement(7, [VcpuThread(0, 8, [1]), VcpuThread(1, 9, [2])], NumaMemory({0: GIB, 1: 15 * GIB}))
    exposition = _scrape_vm(inv, tmp_path, xml(vcpupins={0: [1], 1: [2]}), placement)
    assert exposition.value("nodeagent_vm_numa_aligned", domain="ns_vm") == 0
    assert exposition.value("nodeagent_vm_numa_memory_bytes", domain="ns_vm", numa_node="1") == 15 * GIB
    assert exposition.value("nodeagent_vm_vcpus_pinned", domain="ns_vm") == 2


def test_cgroup_affinity_decides_alignment_but_is_not_pinning(tmp_path: Path) -> None:
    inv = two_nodes()
    # a shared-CPU pod whose cgroup cpuset is node 1: its memory on node 1 is aligned
    placement = ProcessPlacement(7, [VcpuThread(0, 8, [4, 5, 6, 7]), VcpuThread(1, 9, [4, 5, 6, 7])],
                                 NumaMemory({1: 4 * GIB}))
    exposition = _scrape_vm(inv, tmp_path, xml(), placement)
    assert exposition.value("nodeagent_vm_numa_aligned", domain="ns_vm") == 1
    assert exposition.value("nodeagent_vm_vcpus_pinned", domain="ns_vm") == 0


def test_hugepages_seen_in_numa_maps_count_as_backed(tmp_path: Path) -> None:
    placement = ProcessPlacement(7, [], NumaMemory({0: 2 * GIB}, hugepage_bytes=2 * GIB))
    exposition = _scrape_vm(two_nodes(), tmp_path, xml(hugepages=False), placement)
    assert exposition.value("nodeagent_vm_hugepages_backed", domain="ns_vm") == 1


def test_without_a_process_there_is_no_placement_series(tmp_path: Path) -> None:
    exposition = _scrape_vm(two_nodes(), tmp_path, xml(hugepages=True), None)
    assert exposition.get("nodeagent_vm_numa_aligned") == []
    assert exposition.get("nodeagent_vm_numa_memory_bytes") == []
    assert exposition.value("nodeagent_vm_hugepages_backed", domain="ns_vm") == 1  # the XML says so


def _fake_proc(root: Path, pid: int, uuid: str, numa_maps: str) -> None:
    proc = root / "proc" / str(pid)
    (proc / "task" / str(pid + 1)).mkdir(parents=True)
    (proc / "comm").write_text("qemu-system-x86\n")
    (proc / "cmdline").write_bytes(b"qemu-system-x86_64\0-uuid\0" + uuid.encode() + b"\0")
    (proc / "numa_maps").write_text(numa_maps)
    (proc / "task" / str(pid + 1) / "comm").write_text("CPU 0/KVM\n")
    (proc / "task" / str(pid + 1) / "status").write_text("Cpus_allowed_list:\t5\n")


def test_placement_reader_refreshes_on_its_interval(tmp_path: Path, mocker: object) -> None:
    _fake_proc(tmp_path, 300, "u-1", "7f00 default anon=10 N0=10 kernelpagesize_kB=4\n")
    clock = mocker.patch("nodeagent.metrics.placement.time.monotonic", return_value=100.0)  # type: ignore[attr-defined]
    reader = PlacementReader(Host(str(tmp_path)), refresh_s=30, rescan_interval_s=0)
    sample = domain("ns_vm", "u-1", xml=None)
    first = reader.read(sample)
    assert first is not None and first.memory == NumaMemory({0: 40960}) and first.threads[0].allowed_cpus == [5]
    (tmp_path / "proc" / "300" / "numa_maps").write_text("7f00 default anon=10 N1=10 kernelpagesize_kB=4\n")
    assert reader.read(sample) is first  # within the interval: not re-read
    clock.return_value = 131.0
    again = reader.read(sample)
    assert again is not None and again.memory == NumaMemory({1: 40960})
    assert reader.read(domain("other", "u-2", xml=None)) is None  # no such process
    test_driver = replace(sample, driver="Test")
    assert reader.read(test_driver) is None  # not a QEMU domain: /proc is not searched


@pytest.mark.parametrize("driver", ["QEMU", "qemu"])
def test_placement_reader_accepts_the_qemu_driver_name(tmp_path: Path, driver: str) -> None:
    _fake_proc(tmp_path, 300, "u-1", "7f00 default anon=1 N0=1 kernelpagesize_kB=4\n")
    reader = PlacementReader(Host(str(tmp_path)), refresh_s=0, rescan_interval_s=0)
    assert reader.read(replace(domain("ns_vm", "u-1", xml=None), driver=driver)) is not None
