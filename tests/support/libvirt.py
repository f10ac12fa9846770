"""Real libvirt peers for the metrics tests: libvirt's test driver, a private libvirtd with QEMU/KVM,
and guests started in it. The fixtures in tests/metrics/conftest.py start and clean them up.
"""

from __future__ import annotations

import contextlib
import grp
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TEST_DOMAIN_PREFIX = "natest-"  # every domain these tests create; stale ones are removed on start


def libvirt_module() -> Any:
    return pytest.importorskip("libvirt", reason="libvirt-python is not installed")


TEST_DRIVER_DOMAIN = """<domain type='test'>
  <name>{name}</name>{uuid}
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu placement='static'{cpuset}>{vcpus}</vcpu>
  {metadata}
  <os><type>hvm</type></os>
  {cputune}
  <devices>{hostdevs}</devices>
</domain>"""


@dataclass
class DomainSpec:
    name: str
    vcpus: int = 2
    memory_mib: int = 64
    kubevirt: bool = True
    hostdevs: tuple[str, ...] = ()  # PCI addresses
    vcpupins: dict[int, str] | None = None
    cpuset: str | None = None
    uuid: str | None = None  # to redefine an existing domain

    def xml(self) -> str:
        metadata = ('<metadata><kubevirt xmlns="http://kubevirt.io"><uid>' + str(uuid.uuid4()) +
                    "</uid></kubevirt></metadata>") if self.kubevirt else ""
        hostdevs = ""
        for address in self.hostdevs:
            dom, bus, rest = address.split(":")
            slot, fn = rest.split(".")
            hostdevs += (f"<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x{dom}' "
                         f"bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/></source></hostdev>")
        cputune = ""
        if self.vcpupins:
            cputune = "<cputune>" + "".join(f"<vcpupin vcpu='{v}' cpuset='{c}'/>" for v, c in self.vcpupins.items()) \
                + "</cputune>"
        return TEST_DRIVER_DOMAIN.format(
            name=self.name, memory_mib=self.memory_mib, vcpus=self.vcpus, metadata=metadata, hostdevs=hostdevs,
            cputune=cputune, cpuset=f" cpuset='{self.cpuset}'" if self.cpuset else "",
            uuid=f"<uuid>{self.uuid}</uuid>" if self.uuid else "")


class LibvirtTestDriver:
    """Domains on the process-wide ``test:///default`` driver, removed again at teardown.

    Every domain name is unique to the test (``natest-<random>-...``), so tests never see each
    other's domains even though the driver's state is shared by the whole process.
    """

    uri = "test:///default"

    def __init__(self) -> None:
        self.libvirt = libvirt_module()
        self.conn = self.libvirt.open(self.uri)
        self.prefix = f"{TEST_DOMAIN_PREFIX}{uuid.uuid4().hex[:6]}-"
        self.names: list[str] = []

    def start(self, spec: DomainSpec) -> Any:
        dom = self.conn.defineXML(spec.xml())
        dom.create()
        self.names.append(spec.name)
        return dom

    def start_many(self, count: int, *, kubevirt: bool = True) -> list[str]:
        names = [f"{self.prefix}ns{i % 7}_vm-{i}" if kubevirt else f"{self.prefix}plain{i}" for i in range(count)]
        for name in names:
            self.start(DomainSpec(name, kubevirt=kubevirt))
        return names

    def remove(self, name: str) -> None:
        dom = self.conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        self.names.remove(name)

    def close(self) -> None:
        for name in list(self.names):
            with contextlib.suppress(self.libvirt.libvirtError):
                self.remove(name)
        self.conn.close()


def pid_alive(pidfile: str) -> int | None:
    try:
        pid = int(Path(pidfile).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


@dataclass
class Libvirtd:
    """The system libvirtd these tests use; started here when it was not running."""

    started_here: bool = False
    virtlogd_started_here: bool = False
    pidfile: str = "/run/libvirtd.pid"
    uri: str = "qemu:///system"

    @property
    def pid(self) -> int | None:
        return pid_alive(self.pidfile)

    def start(self) -> None:
        if pid_alive("/run/virtlogd.pid") is None:
            subprocess.run(["virtlogd", "-d"], check=True)
            self.virtlogd_started_here = True
        if self.pid is None:
            subprocess.run(["libvirtd", "-d"], check=True)
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        libvirt = libvirt_module()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                libvirt.open(self.uri).close()
                return
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, 15)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.1)
        raise RuntimeError(f"libvirtd (pid {pid}) did not stop")

    def restart(self) -> None:
        self.stop()
        subprocess.run(["libvirtd", "-d"], check=True)
        self.wait_ready()


def kvm_for_qemu() -> Callable[[], None]:
    """Let the QEMU user open /dev/kvm as udev would (root:kvm 0660); returns the undo.

    Debian's udev rule gives /dev/kvm to group kvm, of which libvirt-qemu is a member; machines
    without udev (containers) leave it root-only and QEMU then fails with EACCES.
    """
    st = os.stat("/dev/kvm")
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        return lambda: None
    if (st.st_gid == kvm_gid and (st.st_mode & 0o060) == 0o060) or (st.st_mode & 0o006) == 0o006:
        return lambda: None
    os.chown("/dev/kvm", -1, kvm_gid)
    os.chmod("/dev/kvm", (st.st_mode & 0o7777) | 0o060)

    def undo() -> None:
        os.chown("/dev/kvm", -1, st.st_gid)
        os.chmod("/dev/kvm", st.st_mode & 0o7777)

    return undo


def remove_stale_guests(uri: str) -> None:
    libvirt = libvirt_module()
    conn = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains():
            if dom.name().startswith(TEST_DOMAIN_PREFIX):
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
    finally:
        conn.close()


GUEST_XML = """<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu placement='static'>1</vcpu>
  <metadata><kubevirt xmlns="http://kubevirt.io"><uid>{uid}</uid></kubevirt></metadata>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <cputune><vcpupin vcpu='0' cpuset='{pin}'/><emulatorpin cpuset='{pin}'/></cputune>
  <numatune><memory mode='strict' nodeset='{node}'/></numatune>
  <devices>
    <memballoon model='virtio'><stats period='1'/></memballoon>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{disk}'/><target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'><model type='virtio'/><target dev='{tap}' managed='yes'/></interface>
  </devices>
</domain>"""


@dataclass
class Guest:
    """A tiny real QEMU/KVM guest: 64 MiB, 1 vCPU pinned to ``pinned_cpu``, a raw disk, a tap NIC."""

    name: str
    namespace: str
    vm_name: str
    uuid: str
    pinned_cpu: int
    disk: str
    tap: str

    @property
    def pid(self) -> int:
        return int(Path(f"/run/libvirt/qemu/{self.name}.pid").read_text().strip())


def numa_node_of_cpu(cpu: int) -> int:
    from nodeagent.parse import parse_cpulist

    for node in sorted(Path("/sys/devices/system/node").glob("node[0-9]*")):
        if cpu in parse_cpulist((node / "cpulist").read_text()):
            return int(node.name[4:])
    return 0
