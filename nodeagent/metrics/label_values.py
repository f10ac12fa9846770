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
