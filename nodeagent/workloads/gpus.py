"""The ``gpus`` requirement: GPUs a class's VMs take, as a mapping that grows one key at a time.

``passthrough: <n>`` — at least n GPUs ready for passthrough (bound to a vfio driver with their whole
IOMMU group, :attr:`nodeagent.inventory.Gpu.passthrough_ready`). Narrowing which of them count:

* ``product: <name> | [<name>, …]`` — only GPUs of these products (the ``gpu-passthrough.product`` label's
  form, KubeVirt's device-plugin resource name: ``GH100_H100_SXM5_80GB``);
* ``minMemoryMiB: <MiB>`` — only GPUs whose nominal memory (the SKU table) is at least this; a GPU of
  unknown memory does not count;
* ``nvlink: true`` — the n GPUs must share one NVLink fabric (NVSwitches of their generation on this host,
  driven by one model: all on the host driver for Fabric Manager, or all passed through; see
  :mod:`nodeagent.discover.nvlink` for what the host can and cannot see).

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
from nodeagent.kubenames import label_value_error
from nodeagent.workloads.model import RequirementError, RequirementKind, require_mapping, shown

KEYS = ("passthrough", "product", "minMemoryMiB", "nvlink")
FORM = ("a mapping such as {passthrough: 2, product: GH100_H100_SXM5_80GB, minMemoryMiB: 81920, nvlink: true} "
        "(keys: " + ", ".join(KEYS) + "; passthrough required)")
MAX_GPUS = 1024
MAX_PRODUCTS = 64
MAX_MEMORY_MIB = 1 << 30
#: The fabric modes under which a VM's GPUs can use NVLink (inventory.NvlinkFabric.mode).
NVLINK_MODES = ("host", "passthrough")


@dataclass(frozen=True)
class GpusNeeded:
    passthrough: int = 0  # passthrough-ready GPUs (0: none needed)
    products: tuple[str, ...] = ()  # empty: any product
    min_memory_mib: int | None = None
    nvlink: bool = False


def parse_gpus(value: Any) -> GpusNeeded:
    require_mapping(value, KEYS, FORM)
    count = value.get("passthrough", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_GPUS:
        raise RequirementError(f"{shown(count)} is not a number of GPUs from 1 to {MAX_GPUS}", ".passthrough")
    memory = value.get("minMemoryMiB")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int)
                               or not 1 <= memory <= MAX_MEMORY_MIB):
        raise RequirementError(f"{shown(memory)} is not a memory size in MiB from 1 to {MAX_MEMORY_MIB}",
                               ".minMemoryMiB")
    nvlink = value.get("nvlink", False)
    if not isinstance(nvlink, bool):
        raise RequirementError(f"{shown(nvlink)} is not a boolean (true or false)", ".nvlink")
    return GpusNeeded(passthrough=count, products=_products(value.get("product")), min_memory_mib=memory,
                      nvlink=nvlink)


def _products(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    form = "a product name such as GH100_H100_SXM5_80GB, or a list of them"
    if not isinstance(items, list) or not items or len(items) > MAX_PRODUCTS:
        raise RequirementError(f"{shown(value)} is not {form} (1 to {MAX_PRODUCTS})", ".product")
    for index, item in enumerate(items):
        where = ".product" if isinstance(value, str) else f".product[{index}]"
        if not isinstance(item, str) or not item or label_value_error(item):
            raise RequirementError(f"{shown(item)} is not {form} (a label value)", where)
    return tuple(items)


def matching_gpus(inv: Inventory, need: GpusNeeded) -> list[Gpu]:
    """The host's GPUs that count for this requirement: passthrough-ready, of the product and memory asked."""
    return [gpu for gpu in inv.gpus if gpu.passthrough_ready
            and (not need.products or (gpu.product or gpu.device_id) in need.products)
            and (need.min_memory_mib is None or (gpu.memory_mib or 0) >= need.min_memory_mib)]


def nvlinked(inv: Inventory, gpus: list[Gpu]) -> tuple[int, str | None]:
    """The most of ``gpus`` on one usable NVLink fabric, and that fabric's id (None: no usable fabric)."""
    usable = {f.id for f in inv.nvlink_fabrics if f.mode in NVLINK_MODES}
    counts: dict[str, int] = {}
    for gpu in gpus:
        if gpu.nvlink_fabric in usable:
            counts[gpu.nvlink_fabric] = counts.get(gpu.nvlink_fabric, 0) + 1  # type: ignore[index]
    best = max(sorted(counts), key=lambda f: counts[f], default=None)
    return (counts[best], best) if best is not None else (0, None)


def gpus_shortfalls(inv: Inventory, need: GpusNeeded) -> list[str]:
    gpus = matching_gpus(inv, need)
    if len(gpus) < need.passthrough:
        return [f"needs {_count(need)}, has {len(gpus)}"]
    if not need.nvlink:
        return []
    linked, fabric = nvlinked(inv, gpus)
    if linked >= need.passthrough:
        return []
    return [f"needs {_count(need)} on one NVLink fabric, has {linked}{_fabric_state(inv, fabric)}"]


def _fabric_state(inv: Inventory, fabric: str | None) -> str:
    """Why the GPUs are not on a usable fabric, in the words of the inventory."""
    if fabric is not None:
        return f" (on {fabric})"
    if not inv.nvlink_fabrics:
        return " (no NVSwitch fabric the host can see)"
    states = ", ".join(f"{f.id} has NVSwitches {f.mode}" for f in inv.nvlink_fabrics if f.mode not in NVLINK_MODES)
    return f" ({states}: neither all on the host driver nor all passed through)" if states else ""


def _count(need: GpusNeeded) -> str:
    noun = "GPU" if need.passthrough == 1 else "GPUs"
    which = []
    if need.products:
        which.append("product " + " or ".join(need.products))
    if need.min_memory_mib is not None:
        which.append(f"≥ {need.min_memory_mib} MiB")
    return f"{need.passthrough} passthrough-ready {noun}" + (f" ({', '.join(which)})" if which else "")


def describe_gpus(need: GpusNeeded) -> str:
    return f"≥ {_count(need)}" + (", NVLink-connected" if need.nvlink else "")


GPUS = RequirementKind("gpus", FORM, parse_gpus, gpus_shortfalls, describe_gpus)
