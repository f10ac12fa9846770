"""PCI: GPUs (display classes 0x0300/0x0302/0x0380; physical functions only), their IOMMU groups, links,
AER; NVSwitches.

The fixture path works from sysfs alone. Every device's ``class`` is read once to find the GPUs;
the rest is read only for GPUs and the members of their IOMMU groups, each file once
(:class:`FunctionIds`).
"""

from __future__ import annotations

import re

from nodeagent.discover.gpuproducts import memory_mib, nvswitch_generation, product_name
from nodeagent.discover.pciids import PciIds
from nodeagent.host import Host
from nodeagent.inventory import NVIDIA_VENDOR_ID, Gpu, IommuGroupMember, NvSwitch, PcieLink

PCI_DEVICES = "/sys/bus/pci/devices"
GPU_CLASS_PREFIXES = ("0x0300", "0x0302", "0x0380")  # VGA, 3D controller, other display
AER_FILES = {"correctable": "aer_dev_correctable", "nonfatal": "aer_dev_nonfatal", "fatal": "aer_dev_fatal"}
_SPEED = re.compile(r"^\s*([\d.]+)\s*GT/s")


def is_vfio_driver(driver: str | None) -> bool:
    """vfio-pci itself or a vendor variant driver (mlx5_vfio_pci, nvgrace_gpu_vfio_pci, …)."""
    return bool(driver) and (driver == "vfio-pci" or "vfio" in driver)  # type: ignore[operator]


def slot(address: str) -> str:
    """``0000:01:00.1`` → ``0000:01:00``: the functions of one PCI device share it."""
    return address.rsplit(".", 1)[0]


def group_strangers(members: list[IommuGroupMember], own_slots: set[str]) -> list[IommuGroupMember]:
    """Members of an IOMMU group that are neither bridges nor functions of the given PCI slots.

    Any such member makes the group non-viable for handing these devices to a VM, whatever its
    driver: a VFIO group is attached to one VM whole, so a stranger already on vfio-pci belongs to
    whichever VM holds it, not to the one the GPU is meant for.
    """
    return [m for m in members if not m.is_bridge and slot(m.address) not in own_slots]


def member_kind(class_code: str | None, vendor_id: str | None) -> str:
    """What an IOMMU-group member is, from its PCI class (``0x040300`` → audio)."""
    if not class_code:
        return "other"
    base = class_code[2:6]
    if base in ("0300", "0302", "0380"):
        return "gpu"
    if base == "0680" and vendor_id == NVIDIA_VENDOR_ID:
        return "nvswitch"
    if base in ("0604", "0609"):
        return "bridge"
    if base == "0403":
        return "audio"
    if base == "0c03":
        return "usb"
    if base.startswith("0c"):
        return "serial"
    if base.startswith("02"):
        return "network"
    if base.startswith("01"):
        return "storage"
    return "other"


def _hex_id(host: Host, path: str) -> str | None:
    return _hex(host.read_str(path))


def _hex(value: str | None) -> str | None:
    return value[2:].lower() if value and value.startswith("0x") else value


class FunctionIds:
    """The ``class``, ``vendor`` and ``device`` of PCI functions, each read once per discovery.

    Several readers want them of the same function: the scan for GPUs, each GPU's own record, and
    the IOMMU group members (where the GPU is a member of its own group).
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        self._read: dict[tuple[str, str], str | None] = {}

    def get(self, address: str, name: str) -> str | None:
        key = (address, name)
        try:
            return self._read[key]
        except KeyError:
            value = self._read[key] = self.host.read_str(f"{PCI_DEVICES}/{address}/{name}")
            return value

    def hex(self, address: str, name: str) -> str | None:
        """A ``0x10de``-style id without its prefix, in lower case."""
        return _hex(self.get(address, name))


def _link_speed(host: Host, path: str) -> float | None:
    value = host.read_str(path)
    match = _SPEED.match(value or "")
    return float(match.group(1)) if match else None


def read_aer(host: Host, device: str) -> dict[str, int]:
    """Severity → total errors, from the ``TOTAL_ERR_*`` line (or the sum when it is missing)."""
    totals: dict[str, int] = {}
    for severity, name in AER_FILES.items():
        text = host.read_text(f"{device}/{name}")
        if text is None:
            continue
        total, summed = None, 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                continue
            if parts[0].startswith("TOTAL_ERR"):
                total = int(parts[1])
            else:
                summed += int(parts[1])
        totals[severity] = total if total is not None else summed
    return totals


def read_link(host: Host, device: str) -> PcieLink:
    width = host.read_str(f"{device}/current_link_width")
    max_width = host.read_str(f"{device}/max_link_width")
    return PcieLink(
        current_speed_gts=_link_speed(host, f"{device}/current_link_speed"),
        current_width=int(width) if width and width.isdigit() and width != "0" else None,
        max_speed_gts=_link_speed(host, f"{device}/max_link_speed"),
        max_width=int(max_width) if max_width and max_width.isdigit() and max_width != "0" else None,
    )


_VIRTFN = re.compile(r"^virtfn(\d+)$")


def vf_addresses(host: Host, function: str) -> list[tuple[int, str]]:
    """(index, address) of an SR-IOV PF's VFs, from the ``virtfnN`` links of its directory
    ``function`` (``/sys/bus/pci/devices/<pf>``), by index."""
    found: list[tuple[int, str]] = []
    for entry in host.listdir(function):
        match = _VIRTFN.match(entry)
        if match:
            address = host.link_name(f"{function}/{entry}")
            if address:
                found.append((int(match.group(1)), address))
    return sorted(found)


def iommu_group_of(host: Host, device: str) -> int | None:
    name = host.link_name(f"{device}/iommu_group")
    return int(name) if name and name.isdigit() else None


def read_member(host: Host, address: str, ids: FunctionIds | None = None) -> IommuGroupMember:
    ids = ids or FunctionIds(host)
    class_code = ids.get(address, "class")
    vendor = ids.hex(address, "vendor")
    return IommuGroupMember(
        address=address,
        vendor_id=vendor,
        device_id=ids.hex(address, "device"),
        class_code=class_code,
        kind=member_kind(class_code, vendor),
        driver=host.link_name(f"{PCI_DEVICES}/{address}/driver"),
    )


def group_members(host: Host, group: int, ids: FunctionIds | None = None) -> list[IommuGroupMember]:
    ids = ids or FunctionIds(host)
    return [read_member(host, a, ids) for a in host.listdir(f"/sys/kernel/iommu_groups/{group}/devices")]


def passthrough_blockers(driver: str | None, iommu_enabled: bool, group: int | None,
                         members: list[IommuGroupMember], address: str) -> list[str]:
    """Why a GPU (or NVSwitch) is not passthrough-ready (docs/inventory.md); empty when it is."""
    blockers: list[str] = []
    if not iommu_enabled:
        blockers.append("IOMMU is not enabled")
    elif group is None:
        blockers.append("device has no IOMMU group")
    if not is_vfio_driver(driver):
        blockers.append(f"bound to {driver or 'no driver'}, not vfio-pci")
    for member in members:
        if member.address != address and not member.is_bridge and not is_vfio_driver(member.driver):
            blockers.append(f"IOMMU group member {member.address} ({member.kind}) is bound to "
                            f"{member.driver or 'no driver'}, not vfio-pci")
    return blockers


def read_driver_override(host: Host, address: str) -> str | None:
    """A device's ``driver_override``; None when unset (the kernel prints ``(null)``) or absent."""
    value = host.read_str(f"{PCI_DEVICES}/{address}/driver_override")
    return None if value in (None, "", "(null)") else value


def _optional_int(host: Host, path: str) -> int | None:
    value = host.read_int(path)
    return None if value is None or value < 0 else value


def discover_pci(host: Host, iommu_enabled: bool) -> tuple[list[Gpu], list[NvSwitch], int]:
    """(GPUs, NVSwitches, number of PCI functions)."""
    addresses = host.listdir(PCI_DEVICES)
    ids = FunctionIds(host)
    gpus_at: list[tuple[str, str]] = []
    nvswitches_at: list[str] = []
    for address in addresses:
        class_code = ids.get(address, "class") or ""
        if class_code.startswith(GPU_CLASS_PREFIXES):
            # An SR-IOV VF of a GPU (vGPU: Ampere's mdev parents, vGPU 17's VFs) is not a GPU of its
            # own; it is listed under the inventory's vgpu key (discover.vgpu).
            if host.readlink(f"{PCI_DEVICES}/{address}/physfn") is None:
                gpus_at.append((address, class_code))
        elif class_code.startswith("0x0680") and ids.hex(address, "vendor") == NVIDIA_VENDOR_ID:
            nvswitches_at.append(address)
    names = PciIds.from_host(host) if gpus_at or nvswitches_at else PciIds(None)
    gpus = [_read_gpu(host, address, class_code, names, iommu_enabled, ids=ids) for address, class_code in gpus_at]
    nvswitches = [_read_nvswitch(host, address, names, iommu_enabled, ids) for address in nvswitches_at]
    return gpus, nvswitches, len(addresses)


def _passthrough_facts(host: Host, address: str, iommu_enabled: bool,
                       ids: FunctionIds) -> tuple[str | None, int | None, list[IommuGroupMember], list[str]]:
    """A function's driver, IOMMU group, the group's members and what keeps it from passthrough."""
    device = f"{PCI_DEVICES}/{address}"
    driver = host.link_name(f"{device}/driver")
    group = iommu_group_of(host, device)
    members = group_members(host, group, ids) if group is not None else []
    return driver, group, members, passthrough_blockers(driver, iommu_enabled, group, members, address)


def _read_nvswitch(host: Host, address: str, names: PciIds, iommu_enabled: bool, ids: FunctionIds) -> NvSwitch:
    device = f"{PCI_DEVICES}/{address}"
    device_id = ids.hex(address, "device") or "unknown"
    driver, group, members, blockers = _passthrough_facts(host, address, iommu_enabled, ids)
    return NvSwitch(
        address=address,
        device_id=device_id,
        name=names.lookup(NVIDIA_VENDOR_ID, device_id).device or f"{NVIDIA_VENDOR_ID}:{device_id}",
        generation=nvswitch_generation(NVIDIA_VENDOR_ID, device_id),
        driver=driver,
        iommu_group=group,
        numa_node=_optional_int(host, f"{device}/numa_node"),
        group_members=members,
        passthrough_ready=not blockers,
        passthrough_blockers=blockers,
        power_state=host.read_str(f"{device}/power_state"),
    )


def _read_gpu(host: Host, address: str, class_code: str, names: PciIds, iommu_enabled: bool, *,
              ids: FunctionIds) -> Gpu:
    device = f"{PCI_DEVICES}/{address}"
    vendor = ids.hex(address, "vendor") or "unknown"
    device_id = ids.hex(address, "device") or "unknown"
    driver, group, members, blockers = _passthrough_facts(host, address, iommu_enabled, ids)
    subsystem_vendor = _hex_id(host, f"{device}/subsystem_vendor")
    subsystem_device = _hex_id(host, f"{device}/subsystem_device")
    name = names.lookup(vendor, device_id)
    return Gpu(
        address=address,
        vendor_id=vendor,
        device_id=device_id,
        subsystem_vendor_id=subsystem_vendor,
        subsystem_device_id=subsystem_device,
        class_code=class_code,
        name=name.device or f"{vendor}:{device_id}",
        vendor_name=name.vendor,
        driver=driver,
        driver_override=read_driver_override(host, address),
        iommu_group=group,
        numa_node=_optional_int(host, f"{device}/numa_node"),
        local_cpus=host.read_cpulist(f"{device}/local_cpulist") or [],
        boot_vga=host.read_int(f"{device}/boot_vga") == 1,
        group_devices=[m.address for m in members],
        group_members=members,
        passthrough_ready=not blockers,
        passthrough_blockers=blockers,
        link=read_link(host, device),
        aer=read_aer(host, device),
        power_state=host.read_str(f"{device}/power_state"),
        product=product_name(name.device, device_id),
        memory_mib=memory_mib(vendor, device_id, subsystem_vendor, subsystem_device),
    )
