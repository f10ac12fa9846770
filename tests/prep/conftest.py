"""Fixtures for the prep tests: small synthetic host trees whose kernel side is emulated.

The trees are built here, from a few parameters, rather than taken from ``fixtures/hostgen``:
prep needs *writable* hosts whose kernel reacts to writes (a PCI ``bind`` moves the ``driver``
link, ``nr_hugepages`` allocates only what memory allows, ``modprobe vfio-pci`` creates the
driver), which :class:`KernelEmulator` provides as a ``Host`` interceptor and
``Host.command_runner``. Tests on the shared fixture hosts (``fresh_host_tree``) use the same
emulator.

The ``real_host_state`` fixture snapshots this machine's hugepage and KSM values and the files
nodeagent owns, and restores them afterwards whatever the test did.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nodeagent.host import CommandResult, Host, WriteRecord


@dataclass
class PciFn:
    address: str
    vendor: str
    device: str
    class_code: str
    driver: str | None
    group: int
    boot_vga: bool = False
    numa_node: int = 0
    framebuffer: bool = False


@dataclass
class TreeSpec:
    cpus: int = 8
    nodes: int = 2
    vendor: str = "GenuineIntel"
    node_mem_kb: int = 64 * 1024 * 1024
    page_sizes: tuple[int, ...] = (2048, 1048576)
    pages: dict[tuple[int, int], int] = field(default_factory=dict)  # (node, kB) → nr
    capacity: dict[tuple[int, int], int] = field(default_factory=dict)  # (node, kB) → most pages possible
    ksm: dict[str, int] | None = field(default_factory=lambda: {"run": 0, "pages_to_scan": 100,
                                                                  "sleep_millisecs": 20, "pages_shared": 0,
                                                                  "pages_sharing": 0})
    governors: list[str] | None = field(default_factory=lambda: ["performance", "powersave"])
    governor: str = "powersave"
    isolated: str = ""
    release: str = "6.8.0-45-generic"
    cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet"
    iommu: bool = True
    pci: list[PciFn] = field(default_factory=list)
    loaded_drivers: tuple[str, ...] = ("nvidia", "snd_hda_intel", "xhci_hcd", "amdgpu", "pcieport")
    vfio_loaded: bool = True
    grub_tool: str | None = "update-grub"


def _put(root: Path, path: str, content: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)


def _link(root: Path, path: str, target: str) -> None:
    link = root / path.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def build_tree(root: Path, spec: TreeSpec) -> Path:
    """Write a host tree that ``discover`` reads as the host ``spec`` describes."""
    from nodeagent.parse import format_cpulist

    cpus = list(range(spec.cpus))
    per_node = max(1, spec.cpus // spec.nodes)
    _put(root, "/proc/cpuinfo", "".join(
        f"processor\t: {c}\nvendor_id\t: {spec.vendor}\nmodel name\t: Test CPU\nphysical id\t: 0\n"
        f"flags\t\t: fpu vmx pdpe1gb avx2 avx512f\n\n" for c in cpus))
    _put(root, "/sys/devices/system/cpu/online", format_cpulist(cpus) + "\n")
    _put(root, "/sys/devices/system/cpu/isolated", spec.isolated + "\n")
    for c in cpus:
        _put(root, f"/sys/devices/system/cpu/cpu{c}/topology/core_cpus_list", f"{c}\n")
        _put(root, f"/sys/devices/system/cpu/cpu{c}/topology/physical_package_id", "0\n")
    if spec.governors is not None:
        for c in cpus:
            base = f"/sys/devices/system/cpu/cpufreq/policy{c}"
            _put(root, f"{base}/affected_cpus", f"{c}\n")
            _put(root, f"{base}/related_cpus", f"{c}\n")
            _put(root, f"{base}/scaling_governor", spec.governor + "\n")
            _put(root, f"{base}/scaling_available_governors", " ".join(spec.governors) + "\n")
            _put(root, f"{base}/scaling_driver", "intel_pstate\n")
    _put(root, "/sys/devices/system/node/online", format_cpulist(range(spec.nodes)) + "\n")
    for n in range(spec.nodes):
        node_cpus = cpus[n * per_node:(n + 1) * per_node]
        base = f"/sys/devices/system/node/node{n}"
        _put(root, f"{base}/cpulist", format_cpulist(node_cpus) + "\n")
        _put(root, f"{base}/distance", " ".join("10" if m == n else "21" for m in range(spec.nodes)) + "\n")
        _put(root, f"{base}/meminfo", f"Node {n} MemTotal:       {spec.node_mem_kb} kB\n"
                                      f"Node {n} MemFree:        {spec.node_mem_kb // 2} kB\n")
        for kb in spec.page_sizes:
            nr = spec.pages.get((n, kb), 0)
            pool = f"{base}/hugepages/hugepages-{kb}kB"
            _put(root, f"{pool}/nr_hugepages", f"{nr}\n")
            _put(root, f"{pool}/free_hugepages", f"{nr}\n")
            _put(root, f"{pool}/surplus_hugepages", "0\n")
    for kb in spec.page_sizes:
        total = sum(spec.pages.get((n, kb), 0) for n in range(spec.nodes))
        pool = f"/sys/kernel/mm/hugepages/hugepages-{kb}kB"
        for name in ("nr_hugepages", "free_hugepages"):
            _put(root, f"{pool}/{name}", f"{total}\n")
        for name in ("surplus_hugepages", "resv_hugepages"):
            _put(root, f"{pool}/{name}", "0\n")
    _put(root, "/proc/meminfo", f"MemTotal: {spec.node_mem_kb * spec.nodes} kB\n"
                                f"MemAvailable: {spec.node_mem_kb * spec.nodes // 2} kB\nHugepagesize:       2048 kB\n")
    _put(root, "/proc/sys/vm/compact_memory", "")
    if spec.ksm is not None:
        for name, value in spec.ksm.items():
            _put(root, f"/sys/kernel/mm/ksm/{name}", f"{value}\n")
    _put(root, "/proc/cmdline", spec.cmdline + "\n")
    _put(root, "/proc/version", f"Linux version {spec.release} (gcc) #1 SMP PREEMPT_DYNAMIC\n")
    _put(root, "/proc/sys/kernel/osrelease", spec.release + "\n")
    _put(root, "/proc/sys/kernel/hostname", "testnode\n")
    (root / "proc" / "1" / "fd").mkdir(parents=True, exist_ok=True)
    _put(root, "/proc/1/comm", "systemd\n")
    (root / "etc" / "default" / "grub.d").mkdir(parents=True, exist_ok=True)
    if spec.grub_tool:
        _put(root, f"/usr/sbin/{spec.grub_tool}", "#!/bin/sh\n")
        os.chmod(root / "usr" / "sbin" / spec.grub_tool, 0o755)
    drivers = set(spec.loaded_drivers) | ({"vfio-pci"} if spec.vfio_loaded else set())
    for name in drivers:
        for attr in ("bind", "unbind", "new_id"):
            _put(root, f"/sys/bus/pci/drivers/{name}/{attr}", "")
    _put(root, "/sys/bus/pci/drivers_probe", "")
    if spec.iommu:
        (root / "sys/kernel/iommu_groups/0/devices").mkdir(parents=True, exist_ok=True)
    for fn in spec.pci:
        device = f"/sys/bus/pci/devices/{fn.address}"
        _put(root, f"{device}/vendor", f"0x{fn.vendor}\n")
        _put(root, f"{device}/device", f"0x{fn.device}\n")
        _put(root, f"{device}/class", f"{fn.class_code}\n")
        _put(root, f"{device}/driver_override", "(null)\n")
        _put(root, f"{device}/numa_node", f"{fn.numa_node}\n")
        if fn.class_code.startswith("0x03"):
            _put(root, f"{device}/boot_vga", "1\n" if fn.boot_vga else "0\n")
        if fn.framebuffer:
            _put(root, f"{device}/graphics/fb0/dev", "29:0\n")
        if fn.driver:
            _link(root, f"{device}/driver", f"/sys/bus/pci/drivers/{fn.driver}")
        if spec.iommu:
            _link(root, f"{device}/iommu_group", f"/sys/kernel/iommu_groups/{fn.group}")
            _link(root, f"/sys/kernel/iommu_groups/{fn.group}/devices/{fn.address}", device)
    return root


# --- the emulated kernel ---------------------------------------------------------------------


@dataclass
class KernelEmulator:
    """The kernel's reaction to prep's writes, for a tree built by :func:`build_tree`.

    ``capacity``: most pages the "kernel" can find per (node, kB); ``compaction_gain``: pages
    each compaction makes available; ``native``: the driver a device binds to on a plain probe.
    """

    root: Path
    capacity: dict[tuple[int, int], int] = field(default_factory=dict)
    compaction_gain: int = 0
    native: dict[str, str] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    fail_commands: dict[str, int] = field(default_factory=dict)
    compactions: int = 0

    def fs(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def install(self, host: Host) -> Host:
        host.interceptors.append(self)
        host.command_runner = self.run
        return host

    def __call__(self, host: Host, record: WriteRecord) -> bool:
        path, value = record.path, (record.value or "")
        if record.kind != "write":
            return False
        parts = path.strip("/").split("/")
        if path == "/proc/sys/vm/compact_memory":
            self.compactions += 1
            for key in self.capacity:
                self.capacity[key] += self.compaction_gain
            return True
        if path.endswith("/nr_hugepages") and parts[:4] == ["sys", "devices", "system", "node"]:
            node = int(parts[4][4:])
            kb = int(parts[6][len("hugepages-"):-2])
            want = int(value.strip())
            limit = self.capacity.get((node, kb))
            got = want if limit is None else min(want, limit)
            old = int(self.fs(path).read_text())
            self.fs(path).write_text(f"{got}\n")
            free = self.fs(path).with_name("free_hugepages")
            free.write_text(f"{max(0, int(free.read_text()) + got - old)}\n")
            return True
        if parts[:4] == ["sys", "bus", "pci", "devices"] and len(parts) >= 6:
            address = parts[4]
            device = self.fs(f"/sys/bus/pci/devices/{address}")
            if parts[5] == "driver_override":
                text = value.strip()
                (device / "driver_override").write_text((text or "(null)") + "\n")
                return True
            if parts[5:] == ["driver", "unbind"]:
                self._unbind(device, value.strip())
                return True
        if parts[:4] == ["sys", "bus", "pci", "drivers"] and len(parts) == 6:
            driver, attr = parts[4], parts[5]
            device = self.fs(f"/sys/bus/pci/devices/{value.strip()}")
            if attr == "unbind":
                if (device / "driver").is_symlink() and os.readlink(device / "driver").endswith("/" + driver):
                    (device / "driver").unlink()
                    return True
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), path)
            if attr == "bind":
                self._bind(device, driver)
                return True
        if path == "/sys/bus/pci/drivers_probe":
            address = value.strip()
            device = self.fs(f"/sys/bus/pci/devices/{address}")
            if (device / "driver").is_symlink():
                return True
            override = (device / "driver_override").read_text().strip()
            chosen = override if override != "(null)" else self.native.get(address)
            if chosen and self.fs(f"/sys/bus/pci/drivers/{chosen}").is_dir():
                self._bind(device, chosen)
            return True
        if path.startswith(("/sys/", "/proc/sys/")):
            # Any other attribute: the kernel shows what was written, one line.
            target = host.fs_path(path)
            if not os.path.isfile(target):
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            Path(target).write_text(value.rstrip("\n") + "\n")
            return True
        return False

    def _unbind(self, device: Path, address: str) -> None:
        if device.name != address:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), str(device))
        if (device / "driver").is_symlink():
            (device / "driver").unlink()

    def _bind(self, device: Path, driver: str) -> None:
        if (device / "driver").is_symlink():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(device))
        override = (device / "driver_override").read_text().strip()
        if override not in ("(null)", driver):
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), str(device))
        if not self.fs(f"/sys/bus/pci/drivers/{driver}").is_dir():
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), str(device))
        (device / "driver").symlink_to(f"/sys/bus/pci/drivers/{driver}")

    def run(self, argv: Sequence[str]) -> CommandResult:
        self.commands.append(list(argv))
        code = self.fail_commands.get(argv[0], 0)
        if code:
            return CommandResult(list(argv), code, "", f"{argv[0]}: simulated failure")
        if list(argv[:2]) == ["modprobe", "vfio-pci"]:
            for attr in ("bind", "unbind", "new_id"):
                _put(self.root, f"/sys/bus/pci/drivers/vfio-pci/{attr}", "")
        return CommandResult(list(argv), 0)


# --- snapshots, for "exactly as it was" ------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every file's content and every symlink's target under ``root`` (the whole host state)."""
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                state[rel] = "-> " + os.readlink(full)
            elif full.is_file():
                if rel.endswith("apply.lock"):
                    continue
                state[rel] = full.read_text()
    return state


GPU_NVIDIA = ("10de", "2684", "0x030000")  # RTX 4090
AUDIO_NVIDIA = ("10de", "22ba", "0x040300")
USB_ASMEDIA = ("1b21", "2142", "0x0c0330")
BRIDGE = ("1000", "8747", "0x060400")


def nps4_like_pci() -> list[PciFn]:
    """A viable group (GPU + audio on the host drivers), a non-viable one (GPU + audio + an
    unrelated USB controller behind the same switch), and the boot VGA in the latter."""
    return [
        PciFn("0000:41:00.0", *GPU_NVIDIA, driver="nvidia", group=20, numa_node=1),
        PciFn("0000:41:00.1", *AUDIO_NVIDIA, driver="snd_hda_intel", group=20, numa_node=1),
        PciFn("0000:82:00.0", *BRIDGE, driver="pcieport", group=30, numa_node=0),
        PciFn("0000:83:00.0", "1002", "744c", "0x030000", driver="amdgpu", group=30, boot_vga=True),
        PciFn("0000:83:00.1", "1002", "ab30", "0x040300", driver="snd_hda_intel", group=30),
        PciFn("0000:84:00.0", *USB_ASMEDIA, driver="xhci_hcd", group=30),
    ]


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[object]:
    """``make_host(spec, **emulator_kwargs) -> (Host, KernelEmulator, root)``."""
    counter = [0]

    def make(spec: TreeSpec | None = None, **kwargs: object) -> tuple[Host, KernelEmulator, Path]:
        counter[0] += 1
        spec = spec or TreeSpec()
        root = build_tree(tmp_path / f"host{counter[0]}", spec)
        native = {fn.address: fn.driver for fn in spec.pci if fn.driver and fn.driver != "vfio-pci"}
        emulator = KernelEmulator(root, capacity=dict(spec.capacity), native=native, **kwargs)  # type: ignore[arg-type]
        host = emulator.install(Host(str(root)))
        return host, emulator, root

    yield make


# --- the real host ---------------------------------------------------------------------------

REAL_FILES = ("/etc/nodeagent/profile.yaml", "/var/lib/nodeagent/journal.json",
              "/etc/default/grub.d/90-nodeagent.cfg", "/etc/modprobe.d/90-nodeagent-vfio.conf")
REAL_DIRS = ("/etc/nodeagent", "/var/lib/nodeagent", "/etc/default/grub.d", "/etc/default", "/etc/modprobe.d")


def _real_values() -> dict[str, str]:
    values: dict[str, str] = {}
    node_dir = Path("/sys/devices/system/node")
    for pool in sorted(node_dir.glob("node*/hugepages/hugepages-*kB/nr_hugepages")):
        values[str(pool)] = pool.read_text().strip()
    ksm = Path("/sys/kernel/mm/ksm")
    for name in ("run", "pages_to_scan", "sleep_millisecs"):
        if (ksm / name).exists():
            values[str(ksm / name)] = (ksm / name).read_text().strip()
    return values


@pytest.fixture
def real_host_state() -> Iterator[dict[str, str]]:
    """This machine's hugepage/KSM values and nodeagent's files, restored after the test."""
    if os.geteuid() != 0 or not os.access("/sys/kernel/mm/ksm/run", os.W_OK):
        pytest.skip("needs root and a writable /sys (the real-host tests change kernel state)")
    before = _real_values()
    files = {p: Path(p).read_text() if Path(p).exists() else None for p in REAL_FILES}
    dirs = {d: Path(d).is_dir() for d in REAL_DIRS}
    try:
        yield before
    finally:
        for path, value in sorted(before.items(), key=lambda item: "run" not in item[0]):
            current = Path(path).read_text().strip()
            if current != value:
                # KSM run=2 unmerges before a stop; pools are simply set back.
                Path(path).write_text(value)
        for path, content in files.items():
            if content is None:
                Path(path).unlink(missing_ok=True)
            else:
                Path(path).write_text(content)
        lock = Path("/var/lib/nodeagent/apply.lock")
        if not dirs["/var/lib/nodeagent"]:
            lock.unlink(missing_ok=True)
        for directory in REAL_DIRS:
            if not dirs[directory] and Path(directory).is_dir() and not any(Path(directory).iterdir()):
                shutil.rmtree(directory)
