"""Interlocks judged on today's facts even when the GPU binding waits for the reboot that turns the IOMMU on.

Host: fixtures/specs ``amd-nps4-consumer`` with the IOMMU off (IVRS present, no groups yet).
The RTX 4090 (+ audio) sits alone under root port 40:01.1; the boot-VGA Radeon (+ audio) sits
behind a PEX 8747 switch whose other downstream port holds an ASMedia USB controller. Extended
config space (ACS) is written as root would read it, so the IOMMU groups the kernel will form are
predictable from the topology (nodeagent.prep.groups, after the kernel's pci_device_group).
"""

from __future__ import annotations

import copy
import struct
from pathlib import Path

import pytest

from fixtures.hostgen import build_host, load_spec
from nodeagent.host import Host
from nodeagent.prep.groups import DOWNSTREAM, ROOT_PORT, UPSTREAM, predict_group
from tests.prep.helpers import applied, planned

RADEON = {"gpu": {"passthrough": [{"address": "0000:83:00.0"}]}}
RTX = {"gpu": {"passthrough": [{"vendor": "10de", "device": "2684"}]}}
ENDPOINT = 0x0


def config(port: int, *, acs: bool | None, multifunction: bool = False, bridge: bool = False) -> bytes:
    """4 KiB of config space: a PCI Express capability of ``port`` type, and ACS when given."""
    cfg = bytearray(4096)
    cfg[0x0E] = (0x01 if bridge else 0x00) | (0x80 if multifunction else 0x00)
    cfg[0x34] = 0x40
    cfg[0x40], cfg[0x41] = 0x10, 0x00
    struct.pack_into("<H", cfg, 0x42, (port << 4) | 0x2)
    if acs is not None:
        struct.pack_into("<I", cfg, 0x100, 0x000D | (1 << 16))
        struct.pack_into("<HH", cfg, 0x104, 0x1F, 0x1D if acs else 0x0)
    return bytes(cfg)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _, spec = load_spec("amd-nps4-consumer")
    spec = copy.deepcopy(spec)
    spec["iommu"] = {"firmware": "amd", "enabled": False}
    return build_host(spec, tmp_path / "host")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file's bytes (the tree holds binary ACPI tables and config space)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and not p.name.endswith("apply.lock")}


def write_config(root: Path, address: str, data: bytes) -> None:
    path = root / f"sys/bus/pci/devices/{address}/config"
    path.resolve().chmod(0o644)
    path.write_bytes(data)


def consumer_topology(root: Path) -> None:
    """A consumer board: the Radeon's root port and the switch's downstream ports without ACS."""
    write_config(root, "0000:40:01.1", config(ROOT_PORT, acs=True, bridge=True))
    write_config(root, "0000:41:00.0", config(ENDPOINT, acs=None, multifunction=True))
    write_config(root, "0000:41:00.1", config(ENDPOINT, acs=None))
    write_config(root, "0000:80:01.1", config(ROOT_PORT, acs=False, bridge=True))
    write_config(root, "0000:81:00.0", config(UPSTREAM, acs=None, bridge=True))
    for port in ("0000:82:00.0", "0000:82:08.0"):
        write_config(root, port, config(DOWNSTREAM, acs=False, bridge=True))
    write_config(root, "0000:83:00.0", config(ENDPOINT, acs=None, multifunction=True))
    write_config(root, "0000:83:00.1", config(ENDPOINT, acs=None))
    write_config(root, "0000:84:00.0", config(ENDPOINT, acs=None))


def test_groups_are_predicted_from_acs_and_topology(root: Path) -> None:
    host = Host(str(root))
    assert predict_group(host, "0000:83:00.0") is None  # 64-byte configs: ACS unknown, nothing guessed
    consumer_topology(root)
    assert predict_group(host, "0000:41:00.0") == ["0000:41:00.0", "0000:41:00.1"]
    assert predict_group(host, "0000:83:00.0") == ["0000:83:00.0", "0000:83:00.1", "0000:84:00.0"]


def test_non_viable_boot_vga_gpu_is_refused_before_the_reboot(root: Path) -> None:
    consumer_topology(root)
    host = Host(str(root))
    _, plan = planned(host, RADEON)
    reasons = [r.reason for r in plan.refusals]
    assert any("boot VGA" in r for r in reasons)
    assert any("0000:84:00.0 will share its IOMMU group" in r for r in reasons)
    _, forced = planned(host, RADEON, force=True)  # --force lifts the boot-VGA refusal, never the group one
    assert [r for r in forced.refusals if "will share its IOMMU group" in r.reason]
    before = snapshot(root)
    assert applied(host, RADEON, force=True).exit_code == 2
    assert snapshot(root) == before  # no boot arguments, no modprobe file written for a refused GPU


def test_viable_gpu_waits_for_the_reboot_with_boot_arguments(root: Path) -> None:
    consumer_topology(root)
    _, plan = planned(Host(str(root)), RTX)
    assert not plan.refusals
    assert any("bound after the reboot" in s.reason for s in plan.skipped)
    assert next(c for c in plan.changes if c.subsystem == "bootargs").desired == ["amd_iommu=on", "iommu=pt"]


def test_host_driver_in_use_is_refused_before_the_reboot(root: Path) -> None:
    (root / "sys/bus/pci/devices/0000:83:00.0/graphics/fb0").resolve().mkdir(parents=True)
    _, plan = planned(Host(str(root)), RADEON, force=True)
    assert [r.reason for r in plan.refusals] == [
        "its host driver is in use: framebuffer /dev/fb0 is bound to it (console)"]
