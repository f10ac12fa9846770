"""The IOMMU group a device will have once the IOMMU is on, predicted from the PCI topology today.

With the IOMMU off there are no groups yet, but the kernel's grouping rule (drivers/iommu/iommu.c
``pci_device_group``) depends only on the topology and on ACS: starting at the device, every
upstream bridge whose ACS does not enforce source validation, request and completion redirect and
upstream forwarding (``SV|RR|CR|UF``, the kernel's ``REQ_ACS_FLAGS``) widens the group to
everything below it; the walk stops at the first bridge that isolates, or at the root bus. The
functions of one multi-function device share a group unless the device itself has ACS.

ACS lives in PCI extended configuration space (offset 0x100 on), which only root may read: when a
bridge's ``config`` is shorter than that, the group cannot be predicted (None), and the plan says
the check waits for the reboot rather than guessing.
"""

from __future__ import annotations

import os
import struct

from nodeagent.discover.pci import PCI_DEVICES
from nodeagent.host import Host

ACS_CAP_ID = 0x000D
REQ_ACS_FLAGS = 0x1 | 0x4 | 0x8 | 0x10  # source validation, request/completion redirect, upstream forwarding
BRIDGE_CLASS = 0x0604


PCIE_CAP_ID = 0x10
ROOT_PORT, UPSTREAM, DOWNSTREAM, PCIE_TO_PCI, PCI_TO_PCIE = 0x4, 0x5, 0x6, 0x7, 0x8


def acs_flags_enabled(config: bytes) -> bool | None:
    """Whether ACS control enables every required flag; None when unknown (config shorter than 0x104)."""
    if len(config) < 0x104:
        return None
    offset, seen = 0x100, set()
    while offset and offset not in seen and offset + 8 <= len(config):
        seen.add(offset)
        header = struct.unpack_from("<I", config, offset)[0]
        if header in (0, 0xFFFFFFFF):
            return False
        if header & 0xFFFF == ACS_CAP_ID:
            control = struct.unpack_from("<H", config, offset + 6)[0]
            return control & REQ_ACS_FLAGS == REQ_ACS_FLAGS
        offset = (header >> 20) & 0xFFC
    return False


def port_type(config: bytes) -> int | None:
    """The PCI Express capability's device/port type (None: not PCIe, or not readable)."""
    if len(config) < 0x40:
        return None
    pointer, seen = config[0x34] & 0xFC, set()
    while pointer and pointer not in seen and pointer + 4 <= len(config):
        seen.add(pointer)
        if config[pointer] == PCIE_CAP_ID:
            return (struct.unpack_from("<H", config, pointer + 2)[0] >> 4) & 0xF
        pointer = config[pointer + 1] & 0xFC
    return None


def acs_isolates(config: bytes) -> bool | None:
    """The kernel's ``pci_acs_enabled`` for ``REQ_ACS_FLAGS``: root and downstream ports must enable
    ACS; PCI bridges never isolate; other single-function PCIe functions need none."""
    kind = port_type(config)
    if kind in (ROOT_PORT, DOWNSTREAM):
        return acs_flags_enabled(config)
    if kind in (PCIE_TO_PCI, PCI_TO_PCIE) or (kind is None and len(config) >= 0x100):
        return False  # conventional PCI: no isolation below it
    if kind is None:
        return None  # only the first 64 bytes were readable: unknown
    multifunction = bool(config[0x0E] & 0x80)
    return acs_flags_enabled(config) if multifunction else True


def _is_bridge(host: Host, address: str) -> bool:
    text = host.read_str(f"{PCI_DEVICES}/{address}/class") or "0x0"
    try:
        return int(text, 16) >> 8 == BRIDGE_CLASS
    except ValueError:
        return False


def _below(host: Host, device_path: str) -> list[str]:
    """Every PCI function below a sysfs device directory (a bridge), at any depth."""
    found: list[str] = []
    for entry in host.listdir(device_path):
        if entry.count(":") == 2 and "." in entry and host.is_dir(f"{device_path}/{entry}"):
            found.append(entry)
            found += _below(host, f"{device_path}/{entry}")
    return found


def predict_group(host: Host, address: str) -> list[str] | None:
    """The non-bridge functions that will share ``address``'s IOMMU group (itself included)."""
    path = host.realpath(f"{PCI_DEVICES}/{address}")
    if path is None:
        return None
    slot = address.rsplit(".", 1)[0]
    config = host.read_bytes(f"{PCI_DEVICES}/{address}/config") or b""
    own_acs = acs_isolates(config)
    functions = [a for a in _below(host, os.path.dirname(path)) if a.rsplit(".", 1)[0] == slot]
    members = {address} if own_acs else set(functions) if own_acs is False else None
    if members is None:
        return None
    # The bridges above the device, nearest first, up to the root bus (``pci0000:00`` is not one).
    chain: list[tuple[str, str]] = []
    top = os.path.dirname(path)
    while os.path.basename(top).count(":") == 2:
        chain.append((os.path.basename(top), top))
        top = os.path.dirname(top)
    isolates = [acs_isolates(host.read_bytes(f"{PCI_DEVICES}/{bridge}/config") or b"") for bridge, _ in chain]
    for index, (_, directory) in enumerate(chain):
        # pci_acs_path_enabled(bridge, NULL): this bridge and every one above it must isolate.
        above = isolates[index:]
        if None in above:
            return None
        if all(above):
            break
        members.update(_below(host, directory))
    return sorted(a for a in members if a == address or not _is_bridge(host, a))
