"""The live-source adapters' parsers, on inputs captured from real QEMU/libvirt/kernel output."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.host import Host
from nodeagent.sources.libvirt_source import DomainXml, parse_domain_stats, parse_domain_xml
from nodeagent.sources.numa_maps import parse_numa_maps, read_numa_maps
from nodeagent.sources.qemu_process import QemuProcessIndex, qemu_uuid, vcpu_threads

# Lines as the kernel writes them for a QEMU process with hugepage-backed RAM on a 2-node host:
# QEMU's binary (file-backed, page cache: not guest memory), its heap, a 1Gi hugetlbfs RAM
# backend split over nodes 0 and 1, a memfd backend, and a 2Mi THP-backed anonymous region.
NUMA_MAPS = """\
55620b8ea000 default file=/usr/bin/qemu-system-x86_64 anon=251 dirty=251 active=0 N0=251 N1=40 kernelpagesize_kB=4
55622fdea000 default heap anon=1126 dirty=1126 active=0 N0=1000 N1=126 kernelpagesize_kB=4
7f0000000000 bind:0 file=/dev/hugepages/libvirt/qemu/1-vm/pc.ram huge dirty=6 N0=5 N1=1 kernelpagesize_kB=1048576
7f4000000000 default file=/memfd:pc.ram\\040(deleted) dirty=512 N1=512 kernelpagesize_kB=4
7f8a5be00000 default anon=1536 dirty=1536 active=512 N0=1536 kernelpagesize_kB=4
7f8a65200000 default file=/usr/lib/x86_64-linux-gnu/libc.so.6 mapped=300 mapmax=40 N1=300 kernelpagesize_kB=4
7ffd8a1e5000 default stack anon=9 dirty=9 N0=9 kernelpagesize_kB=4
"""


def test_numa_maps_counts_guest_memory_per_node_in_bytes() -> None:
    memory = parse_numa_maps(NUMA_MAPS)
    gib, page = 1 << 30, 4096
    assert memory.node_bytes == {
        0: (1000 + 1536 + 9) * page + 5 * gib,
        1: (126 + 512) * page + 1 * gib,
    }
    assert memory.hugepage_bytes == 6 * gib
    assert memory.total_bytes == sum(memory.node_bytes.values())


def test_numa_maps_of_an_empty_or_odd_file() -> None:
    assert parse_numa_maps("").node_bytes == {}
    # a line cut short, a token without '=', a non-numeric count: skipped, not a crash
    odd = "7f00 default\n7f01 default anon=x N0=abc Nx=4 kernelpagesize_kB=4 N1=2\n"
    assert parse_numa_maps(odd).node_bytes == {1: 2 * 4096}


def test_numa_maps_read_through_host(tmp_path: Path) -> None:
    (tmp_path / "proc" / "4242").mkdir(parents=True)
    (tmp_path / "proc" / "4242" / "numa_maps").write_text(NUMA_MAPS)
    host = Host(str(tmp_path))
    memory = read_numa_maps(host, 4242)
    assert memory is not None and memory.total_bytes > 0
    assert read_numa_maps(host, 4243) is None  # the process is gone


def _fake_qemu(root: Path, pid: int, uuid: str, threads: dict[int, tuple[str, str]]) -> None:
    proc = root / "proc" / str(pid)
    (proc / "task").mkdir(parents=True)
    (proc / "comm").write_text("qemu-system-x86\n")
    argv = ["/usr/bin/qemu-system-x86_64", "-name", "guest=ns_vm,debug-threads=on", "-uuid", uuid, "-smp", "2"]
    (proc / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    for tid, (comm, allowed) in threads.items():
        task = proc / "task" / str(tid)
        task.mkdir()
        (task / "comm").write_text(comm + "\n")
        (task / "status").write_text(f"Name:\t{comm}\nCpus_allowed:\tff\nCpus_allowed_list:\t{allowed}\n")


def test_qemu_uuid_from_cmdline() -> None:
    assert qemu_uuid(b"qemu\0-uuid\0ABC-def\0-m\0064\0") == "abc-def"
    assert qemu_uuid(b"qemu\0-m\0064\0") is None
    assert qemu_uuid(b"qemu\0-uuid") is None


def test_qemu_process_index_and_vcpu_threads(tmp_path: Path) -> None:
    uuid = "3e7be512-1f7d-4438-b1ca-a3930836ada9"
    _fake_qemu(tmp_path, 900, uuid, {900: ("qemu-system-x86", "0-7"), 901: ("CPU 0/KVM", "2"),
                                     902: ("CPU 1/KVM", "3,5"), 903: ("IO mon_iothread", "0-7")})
    (tmp_path / "proc" / "77").mkdir()
    (tmp_path / "proc" / "77" / "comm").write_text("bash\n")
    host = Host(str(tmp_path))
    index = QemuProcessIndex(host, rescan_interval_s=0)
    assert index.pid(uuid.upper()) == 900
    assert index.pid("00000000-0000-0000-0000-000000000000") is None
    threads = vcpu_threads(host, 900)
    assert [(t.vcpu, t.tid, t.allowed_cpus) for t in threads] == [(0, 901, [2]), (1, 902, [3, 5])]


def test_qemu_process_index_does_not_trust_a_recycled_pid(tmp_path: Path) -> None:
    uuid = "11111111-2222-3333-4444-555555555555"
    _fake_qemu(tmp_path, 900, uuid, {})
    host = Host(str(tmp_path))
    index = QemuProcessIndex(host, rescan_interval_s=0)
    assert index.pid(uuid) == 900
    # the domain stopped and pid 900 now runs another domain's QEMU
    (tmp_path / "proc" / "900" / "cmdline").write_bytes(b"qemu\0-uuid\0other\0")
    assert index.pid(uuid) is None


DOMAIN_XML = """<domain type='kvm' id='7'>
  <name>team-a_trainer-0</name>
  <uuid>9e0b2c52-8c39-4c8e-a1fb-2d3a0a6d1f00</uuid>
  <metadata>
    <kubevirt xmlns="http://kubevirt.io"><uid>f4686d2c</uid><graceperiod/></kubevirt>
  </metadata>
  <memory unit='KiB'>16777216</memory>
  <memoryBacking><hugepages><page size='1048576' unit='KiB'/></hugepages></memoryBacking>
  <vcpu placement='static' cpuset='0-15,^3' current='4'>8</vcpu>
  <cputune>
    <vcpupin vcpu='0' cpuset='4'/>
    <vcpupin vcpu='1' cpuset='5-6'/>
    <emulatorpin cpuset='1'/>
  </cputune>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <driver name='vfio'/>
      <source><address domain='0x0000' bus='0x18' slot='0x00' function='0x0'/></source>
      <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
    </hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0001' bus='0xCA' slot='0x1f' function='0x7'/></source>
    </hostdev>
    <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0x5678'/></source></hostdev>
  </devices>
</domain>"""


def test_domain_xml_facts() -> None:
    facts = parse_domain_xml(DOMAIN_XML)
    assert facts == DomainXml(
        vcpus=4, vcpu_cpuset=[0, 1, 2, *range(4, 16)], vcpupins={0: [4], 1: [5, 6]}, hugepages=True,
        hostdev_pci=["0000:18:00.0", "0001:ca:1f.7"], kubevirt=True)


def test_domain_xml_of_a_plain_domain() -> None:
    facts = parse_domain_xml("<domain type='kvm'><name>web_01</name><vcpu>2</vcpu><devices/></domain>")
    assert facts == DomainXml(vcpus=2, vcpu_cpuset=None, vcpupins={}, hugepages=False, hostdev_pci=[], kubevirt=False)


# One record of getAllDomainStats, as libvirt 9.0 returned it for a running 1-vCPU guest here
# (trimmed of the fields nodeagent does not read), plus a second vCPU, disk and NIC.
REAL_STATS = {
    "state.state": 1, "state.reason": 1, "cpu.time": 1747148000, "cpu.user": 56999000, "cpu.system": 1690148000,
    "balloon.current": 65536, "balloon.maximum": 65536, "balloon.last-update": 0, "balloon.rss": 39388,
    "vcpu.current": 2, "vcpu.maximum": 2,
    "vcpu.0.state": 1, "vcpu.0.time": 1580000000, "vcpu.0.wait": 0, "vcpu.0.delay": 8450422,
    "vcpu.0.halt_exits.sum": 119, "vcpu.0.blocking.cur": False,
    "vcpu.1.state": 1, "vcpu.1.time": 20000000, "vcpu.1.wait": 700,
    "net.count": 1, "net.0.name": "vnet3", "net.0.rx.bytes": 90, "net.0.rx.pkts": 1, "net.0.rx.errs": 0,
    "net.0.rx.drop": 0, "net.0.tx.bytes": 0, "net.0.tx.pkts": 0, "net.0.tx.errs": 0, "net.0.tx.drop": 2,
    "block.count": 1, "block.0.name": "vda", "block.0.path": "/var/lib/images/a.img", "block.0.backingIndex": 1,
    "block.0.rd.reqs": 1, "block.0.rd.bytes": 512, "block.0.rd.times": 146517, "block.0.wr.reqs": 0,
    "block.0.wr.bytes": 0, "block.0.wr.times": 0, "block.0.fl.reqs": 0,
}


def test_domain_stats_record() -> None:
    sample = parse_domain_stats("team-a_trainer-0", "ABC", 3, REAL_STATS, driver="QEMU")
    assert (sample.uuid, sample.id, sample.state_name, sample.cpu_time_ns) == ("abc", 3, "running", 1747148000)
    assert sample.vcpu_count == 2
    assert [(v.index, v.time_ns, v.wait_ns, v.delay_ns) for v in sample.vcpus] == [
        (0, 1580000000, 0, 8450422), (1, 20000000, 700, None)]
    assert sample.balloon_kib == {"current": 65536, "maximum": 65536, "last-update": 0, "rss": 39388}
    assert [(b.name, b.read_bytes, b.read_requests, b.read_time_ns, b.write_bytes) for b in sample.blocks] == [
        ("vda", 512, 1, 146517, 0)]
    assert [(n.name, n.rx_bytes, n.tx_drops) for n in sample.nets] == [("vnet3", 90, 2)]


def test_domain_stats_of_a_test_driver_domain_has_only_state() -> None:
    sample = parse_domain_stats("plain", "u", None, {"state.state": 3, "state.reason": 0})
    assert (sample.state_name, sample.vcpus, sample.blocks, sample.nets, sample.vcpu_count) == (
        "paused", [], [], [], None)


@pytest.mark.parametrize(("name", "kubevirt_xml", "expected"), [
    ("team-a_trainer-0", True, ("team-a", "trainer-0")),
    ("web_01", False, ("", "web_01")),  # XML says it is not KubeVirt's: no split
    ("team-a_trainer-0", None, ("team-a", "trainer-0")),  # no XML yet: KubeVirt's naming rule decides
    ("Web_01", None, ("", "Web_01")),  # not a Kubernetes namespace
    ("plain", None, ("", "plain")),
])
def test_kubevirt_namespace_name_split(name: str, kubevirt_xml: bool | None, expected: tuple[str, str]) -> None:
    xml = None if kubevirt_xml is None else DomainXml(1, None, {}, False, [], kubevirt_xml)
    assert parse_domain_stats(name, "u", 1, {}, xml=xml).namespace_name == expected
