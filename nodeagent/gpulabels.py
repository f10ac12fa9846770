"""The labels that describe a node's passthrough-ready GPUs: product, memory, count per product, NVLink.

GPU Feature Discovery labels GPUs through the host driver (``nvidia.com/gpu.product``,
``nvidia.com/gpu.memory``) and does not run where GPUs are handed to VMs, so nodeagent says the
same about the GPUs it reports passthrough-ready, from their PCI ids (discover/gpuproducts.py),
in its own namespace:

* ``gpu-passthrough.product`` — the product (KubeVirt's device-plugin resource name) when every
  passthrough-ready GPU is the same one; ``mixed`` when they differ (then the per-product counts
  say which).
* ``gpu-passthrough-count.<product>`` — how many passthrough-ready GPUs of each product.
* ``gpu-passthrough.memory-mib`` — the least nominal memory among them, so ``Gt`` selects nodes
  where every passthrough GPU has more; absent when any one's memory is unknown.
* ``gpu-passthrough.nvlink-gpus`` — the most passthrough-ready GPUs on one NVLink fabric whose
  NVSwitches one model drives (host or passthrough), ``0`` when none; ``gpu-passthrough.nvlink-mode``
  that fabric's mode.

Only passthrough-ready GPUs count: a GPU still on a host driver is GFD's to describe.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable

from nodeagent.inventory import Gpu, Inventory, NvlinkFabric

COUNT_PREFIX = "gpu-passthrough-count."  # + product
FIXED_NAMES = ("gpu-passthrough.product", "gpu-passthrough.memory-mib", "gpu-passthrough.nvlink-gpus",
               "gpu-passthrough.nvlink-mode")
MIXED = "mixed"
_NAME_MAX = 63  # a label key's name part
USABLE_MODES = ("host", "passthrough")


def product_of(gpu: Gpu) -> str:
    """The GPU's product name; its device id for an inventory built without one."""
    return gpu.product or gpu.device_id


def count_name(product: str) -> str:
    """``gpu-passthrough-count.<product>``, shortened to a valid key name (63 characters) with a hash
    of the full product so two long names that share a beginning still differ."""
    name = COUNT_PREFIX + product
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(product.encode()).hexdigest()[:8]
    keep = _NAME_MAX - len(COUNT_PREFIX) - len(digest) - 1
    return f"{COUNT_PREFIX}{product[:keep].rstrip('_')}-{digest}"


def best_fabric(inv: Inventory) -> NvlinkFabric | None:
    """The fabric with the most passthrough-ready GPUs among those one model drives (ties: by id)."""
    usable = [f for f in inv.nvlink_fabrics if f.mode in USABLE_MODES and f.passthrough_gpus]
    return max(usable, key=lambda f: (len(f.passthrough_gpus), f.id), default=None)


def gpu_labels(inv: Inventory, own: Callable[[str], str]) -> dict[str, str]:
    """The product, memory, per-product count and NVLink labels (none without passthrough-ready GPUs)."""
    gpus = inv.passthrough_gpus
    if not gpus:
        return {}
    counts = Counter(product_of(g) for g in gpus)
    labels = {own(count_name(product)): str(n) for product, n in sorted(counts.items())}
    labels[own("gpu-passthrough.product")] = next(iter(counts)) if len(counts) == 1 else MIXED
    memories = [g.memory_mib for g in gpus]
    if all(m is not None for m in memories):
        labels[own("gpu-passthrough.memory-mib")] = str(min(memories))  # type: ignore[type-var]
    fabric = best_fabric(inv)
    labels[own("gpu-passthrough.nvlink-gpus")] = str(len(fabric.passthrough_gpus) if fabric else 0)
    if fabric is not None:
        labels[own("gpu-passthrough.nvlink-mode")] = fabric.mode
    return labels


def is_gpu_label_name(name: str) -> bool:
    """A name (the part after nodeagent's prefix) this module computes, on this node or not."""
    return name in FIXED_NAMES or name.startswith(COUNT_PREFIX)
