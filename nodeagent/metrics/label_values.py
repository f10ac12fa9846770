"""How unknown facts become label values, the same way in every collector."""

from __future__ import annotations

UNKNOWN_NUMA_NODE = "-1"  # the kernel's own word for "no NUMA affinity" (sysfs numa_node)
NO_DRIVER = "none"  # a device bound to no driver


def numa_label(node: int | None) -> str:
    return UNKNOWN_NUMA_NODE if node is None or node < 0 else str(node)


def driver_label(driver: str | None) -> str:
    return driver or NO_DRIVER


def optional_label(value: object | None) -> str:
    return "" if value is None else str(value)


def pci_bus_id(address: str) -> str:
    """A PCI address in NVML's/DCGM's ``pci_bus_id`` form: ``0000:3b:00.0`` → ``00000000:3B:00.0``.

    dcgm-exporter labels its series ``pci_bus_id`` in this form (8 hex digits of domain, upper
    case), so nodeagent's GPU series join its series on that label. An address that is not in the
    ``[domain:]bus:device.function`` form is returned as it is.
    """
    head, dot, function = address.rpartition(".")
    parts = head.split(":")
    if not dot or len(parts) not in (2, 3):
        return address
    try:
        numbers = [int(part, 16) for part in parts]
        fn = int(function, 16)
    except ValueError:
        return address
    domain, bus, device = ([0, *numbers] if len(numbers) == 2 else numbers)
    return f"{domain:08X}:{bus:02X}:{device:02X}.{fn:X}"
