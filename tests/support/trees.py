"""Small synthetic host trees for prep: a few parameters, the kernel sysfs ABI, writable.

Built here rather than taken from ``fixtures/hostgen``: prep needs writable hosts whose kernel
reacts to writes (see :mod:`tests.support.kernel`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def put_file(root: Path, path: str, content: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)


def put_link(root: Path, path: str, target: str) -> None:
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
    put_file(root, "/proc/cpuinfo", "".join(
        f"processor\t: {c}\nvendor_id\t: {spec.vendor}\nmodel name\t: Test CPU\nphysical id\t: 0\n"
        f"flags\t\t: fpu vmx pdpe1gb avx2 avx512f\n\n" for c in cpus))
    put_file(root, "/sys/devices/system/cpu/online", format_cpulist(cpus) + "\n")
    put_file(root, "/sys/devices/system/cpu/isolated", spec.isolated + "\n")
    for c in cpus:
        put_file(root, f"/sys/devices/system/cpu/cpu{c}/topology/core_cpus_list", f"{c}\n")
        put_file(root, f"/sys/devices/system/cpu/cpu{c}/topology/physical_package_id", "0\n")
    if spec.governors is not None:
        for c in cpus:
            base = f"/sys/devices/system/cpu/cpufreq/policy{c}"
            put_file(root, f"{base}/affected_cpus", f"{c}\n")
            put_file(root, f"{base}/related_cpus", f"{c}\n")
            put_file(root, f"{base}/scaling_governor", spec.governor + "\n")
            put_file(root, f"{base}/scaling_available_governors", " ".join(spec.governors) + "\n")
            put_file(root, f"{base}/scaling_driver", "intel_pstate\n")
    put_file(root, "/sys/devices/system/node/online", format_cpulist(range(spec.nodes)) + "\n")
    for n in range(spec.nodes):
        node_cpus = cpus[n * per_node:(n + 1) * per_node]
        base = f"/sys/devices/system/node/node{n}"
        put_file(root, f"{base}/cpulist", format_cpulist(node_cpus) + "\n")
        put_file(root, f"{base}/distance", " ".join("10" if m == n else "21" for m in range(spec.nodes)) + "\n")
        put_file(root, f"{base}/meminfo", f"Node {n} MemTotal:       {spec.node_mem_kb} kB\n"
                                      f"Node {n} MemFree:        {spec.node_mem_kb // 2} kB\n")
        for kb in spec.page_sizes:
            nr = spec.pages.get((n, kb), 0)
            pool = f"{base}/hugepages/hugepages-{kb}kB"
            put_file(root, f"{pool}/nr_hugepages", f"{nr}\n")
            put_file(root, f"{pool}/free_hugepages", f"{nr}\n")
            put_file(root, f"{pool}/surplus_hugepages", "0\n")
    for kb in spec.page_sizes:
        total = sum(spec.pages.get((n, kb), 0) for n in range(spec.nodes))
        pool = f"/sys/kernel/mm/hugepages/hugepages-{kb}kB"
        for name in ("nr_hugepages", "free_hugepages"):
            put_file(root, f"{pool}/{name}", f"{total}\n")
        for name in ("surplus_hugepages", "resv_hugepages"):
            put_file(root, f"{pool}/{name}", "0\n")
    put_file(root, "/proc/meminfo", f"MemTotal: {spec.node_mem_kb * spec.nodes} kB\n"
                                f"MemAvailable: {spec.node_mem_kb * spec.nodes // 2} kB\nHugepagesize:       2048 kB\n")
    put_file(root, "/proc/sys/vm/compact_memory", "")
    if spec.ksm is not None:
        for name, value in spec.ksm.items():
            put_file(root, f"/sys/kernel/mm/ksm/{name}", f"{value}\n")
    put_file(root, "/proc/cmdline", spec.cmdline + "\n")
    put_file(root, "/proc/version", f"Linux version {spec.release} (gcc) #1 SMP PREEMPT_DYNAMIC\n")
    put_file(root, "/proc/sys/kernel/osrelease", spec.release + "\n")
    put_file(root, "/proc/sys/kernel/hostname", "testnode\n")
    (root / "proc" / "1" / "fd").mkdir(parents=True, exist_ok=True)
    put_file(root, "/proc/1/comm", "systemd\n")
    (root / "etc" / "default" / "grub.d").mkdir(parents=True, exist_ok=True)
    if spec.grub_tool:
        put_file(root, f"/usr/sbin/{spec.grub_tool}", "#!/bin/sh\n")
        os.chmod(root / "usr" / "sbin" / spec.grub_tool, 0o755)
    drivers = set(spec.loaded_drivers) | ({"vfio-pci"} if spec.vfio_loaded else set())
    for name in drivers:
        for attr in ("bind", "unbind", "new_id"):
            put_file(root, f"/sys/bus/pci/drivers/{name}/{attr}", "")
    put_file(root, "/sys/bus/pci/drivers_probe", "")
    if spec.iommu:
        (root / "sys/kernel/iommu_groups/0/devices").mkdir(parents=True, exist_ok=True)
    for fn in spec.pci:
        device = f"/sys/bus/pci/devices/{fn.address}"
        put_file(root, f"{device}/vendor", f"0x{fn.vendor}\n")
        put_file(root, f"{device}/device", f"0x{fn.device}\n")
        put_file(root, f"{device}/class", f"{fn.class_code}\n")
        put_file(root, f"{device}/driver_override", "(null)\n")
        put_file(root, f"{device}/numa_node", f"{fn.numa_node}\n")
        if fn.class_code.startswith("0x03"):
            put_file(root, f"{device}/boot_vga", "1\n" if fn.boot_vga else "0\n")
        if fn.framebuffer:
            put_file(root, f"{device}/graphics/fb0/dev", "29:0\n")
        if fn.driver:
            put_link(root, f"{device}/driver", f"/sys/bus/pci/drivers/{fn.driver}")
        if spec.iommu:
            put_link(root, f"{device}/iommu_group", f"/sys/kernel/iommu_groups/{fn.group}")
            put_link(root, f"/sys/kernel/iommu_groups/{fn.group}/devices/{fn.address}", device)
    return root


def _state(root: Path, tops: tuple[str, ...], read: Callable[[Path], Any]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(root / top):
            for name in filenames + dirnames:
                full = Path(dirpath) / name
                rel = str(full.relative_to(root))
                if full.is_symlink():
                    state[rel] = "-> " + os.readlink(full)
                elif full.is_file() and not rel.endswith("apply.lock"):
                    state[rel] = read(full)
    return state


def snapshot(root: Path) -> dict[str, str]:
    """Every file's content and every symlink's target under ``root`` (the whole host state)."""
    return _state(root, (".",), Path.read_text)


def byte_snapshot(root: Path, tops: tuple[str, ...] = (".",)) -> dict[str, bytes | str]:
    """Every file's bytes and every symlink's target under ``root``'s ``tops`` (hostgen trees hold binary files)."""
    return _state(root, tops, Path.read_bytes)


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
