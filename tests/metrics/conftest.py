"""Fixtures for the metrics tests: real peers (libvirtd + QEMU, libvirt's test driver, Prometheus)
started and cleaned up here, and helpers to read an exposition back.

Real peers are started only by the tests that ask for them, and only when the machine has them:
a machine without libvirtd, QEMU or /dev/kvm skips those tests with the reason (tests/run.sh
installs the Debian packages named in tests/system-packages.txt, so CI has them all).
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodeagent.inventory import Inventory

TEST_DOMAIN_PREFIX = "natest-"  # every domain these tests create; stale ones are removed on start

# --- reading an exposition -----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Exposition:
    """A parsed exposition: samples by name, with label filters."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: list[Sample] = []
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            self.samples.extend(Sample(s.name, dict(s.labels), s.value) for s in family.samples)

    @property
    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def get(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        found = self.get(name, **labels)
        assert len(found) == 1, f"expected one {name}{labels}, found {found}"
        return found[0].value


def scrape(node_metrics: Any) -> Exposition:
    return Exposition(node_metrics.text().decode())


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


def _libvirt() -> Any:
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
        self.libvirt = _libvirt()
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


@pytest.fixture
def test_driver() -> Iterator[LibvirtTestDriver]:
    driver = LibvirtTestDriver()
    try:
        yield driver
    finally:
        driver.close()


# --- a real libvirtd with a real QEMU/KVM guest ----------------------------------------------


def _pid_alive(pidfile: str) -> int | None:
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
        return _pid_alive(self.pidfile)

    def start(self) -> None:
        if _pid_alive("/run/virtlogd.pid") is None:
            subprocess.run(["virtlogd", "-d"], check=True)
            self.virtlogd_started_here = True
        if self.pid is None:
            subprocess.run(["libvirtd", "-d"], check=True)
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        libvirt = _libvirt()
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


def _kvm_for_qemu() -> Callable[[], None]:
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


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[Libvirtd]:
    """A running system libvirtd (and virtlogd) with QEMU able to use KVM."""
    _libvirt()
    for tool in ("libvirtd", "virtlogd", "qemu-system-x86_64"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed (see tests/system-packages.txt)")
    if os.geteuid() != 0:
        pytest.skip("the system libvirtd needs root")
    if not Path("/dev/kvm").exists():
        pytest.skip("/dev/kvm is missing: no KVM on this machine")
    undo_kvm = _kvm_for_qemu()
    daemon = Libvirtd()
    daemon.started_here = daemon.pid is None
    daemon.start()
    _remove_stale_guests(daemon.uri)
    try:
        yield daemon
    finally:
        _remove_stale_guests(daemon.uri)
        if daemon.started_here:
            daemon.stop()
        if daemon.virtlogd_started_here and (virtlogd := _pid_alive("/run/virtlogd.pid")) is not None:
            os.kill(virtlogd, 15)
        undo_kvm()


def _remove_stale_guests(uri: str) -> None:
    libvirt = _libvirt()
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


def _numa_node_of_cpu(cpu: int) -> int:
    from nodeagent.parse import parse_cpulist

    for node in sorted(Path("/sys/devices/system/node").glob("node[0-9]*")):
        if cpu in parse_cpulist((node / "cpulist").read_text()):
            return int(node.name[4:])
    return 0


@pytest.fixture(scope="session")
def guest(libvirtd: Libvirtd) -> Iterator[Guest]:
    """A running guest, destroyed at the end of the session (transient: nothing stays defined).

    Its vCPU and emulator threads are pinned to one CPU and its memory bound to that CPU's NUMA
    node, so it is NUMA-aligned by construction on any host.
    """
    libvirt = _libvirt()
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
    xml = GUEST_XML.format(name=name, uid=uuid.uuid4(), pin=pinned_cpu, node=_numa_node_of_cpu(pinned_cpu),
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """A real Prometheus on 127.0.0.1 scraping the given targets every second."""

    def __init__(self, targets: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        jobs = "".join(
            f"  - job_name: {job}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
            for job, target in targets.items())
        config.write_text(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n{jobs}")
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> Any:
        import json

        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            payload = json.load(response)
        assert payload["status"] == "success", payload
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def wait_for(self, expr: str, timeout_s: float = 60.0, *, min_results: int = 1) -> list[dict[str, Any]]:
        """Poll an instant query until it returns at least ``min_results`` series."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}")
            try:
                last = self.query(expr)
                if len(last) >= min_results:
                    return last
            except OSError as exc:  # not listening yet
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"{expr!r} returned {last!r} after {timeout_s}s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


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
