"""The ``gpus`` requirement: GPUs a class's VMs take, as a mapping that grows one key at a time.

Today: ``passthrough: <n>`` — at least n GPUs ready for passthrough (bound to a vfio driver with their whole
IOMMU group, :attr:`nodeagent.inventory.Gpu.passthrough_ready`).

To add a key (a product or memory selector, "NVLink-connected", vGPU instances): add a field to
:class:`GpusNeeded`, read it in :func:`parse_gpus` (raise :class:`RequirementError` with the key's path and
accepted form), narrow :func:`matching_gpus` if it selects GPUs or add a shortfall in :func:`gpus_shortfalls`
if it judges them as a set, and word it in :func:`describe_gpus`. Keep each shortfall sized: what the class
needs and what the host has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodeagent.inventory import Gpu, Inventory
from nodeagent.workloads.model import RequirementError, RequirementKind

KEYS = ("passthrough",)
FORM = "a mapping such as {passthrough: 2} (keys: " + ", ".join(KEYS) + ")"
MAX_GPUS = 1024


@dataclass(frozen=True)
class GpusNeeded:
    passthrough: int = 0  # passthrough-ready GPUs (0: none needed)


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value[:80]) if isinstance(value, str) else repr(value)


def parse_gpus(value: Any) -> GpusNeeded:
    if not isinstance(value, dict) or not value:
        raise RequirementError(f"{'an empty mapping' if value == {} else _shown(value)} is not {FORM}")
    for key in value:
        if key not in KEYS:
            raise RequirementError(f"unknown field (allowed here: {', '.join(KEYS)})", f".{key}")
    count = value.get("passthrough", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_GPUS:
        raise RequirementError(f"{_shown(count)} is not a number of GPUs from 1 to {MAX_GPUS}", ".passthrough")
    return GpusNeeded(passthrough=count)


def matching_gpus(inv: Inventory, need: GpusNeeded) -> list[Gpu]:
    """The host's GPUs that count for this requirement (passthrough-ready ones)."""
    return [gpu for gpu in inv.gpus if gpu.passthrough_ready]


def gpus_shortfalls(inv: Inventory, need: GpusNeeded) -> list[str]:
    have = len(matching_gpus(inv, need))
    if have >= need.passthrough:
        return []
    noun = "GPU" if need.passthrough == 1 else "GPUs"
    return [f"needs {need.passthrough} passthrough-ready {noun}, has {have}"]


def describe_gpus(need: GpusNeeded) -> str:
    noun = "GPU" if need.passthrough == 1 else "GPUs"
    return f"≥ {need.passthrough} passthrough-ready {noun}"


GPUS = RequirementKind("gpus", FORM, parse_gpus, gpus_shortfalls, describe_gpus)
