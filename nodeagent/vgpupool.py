"""vGPU pools: per physical GPU and vGPU type, how many instances exist and how many more fit.

One view of :class:`~nodeagent.inventory.VgpuInfo` for labels, metrics, readiness and prep, so they
count the same way. A *pool* is one (physical GPU, type):

* mediated devices: the GPU's parents are the GPU itself (Turing) or its SR-IOV VFs (Ampere/Ada,
  vGPU <= 16); ``used`` counts the instances of the type on them, ``available`` sums their
  ``available_instances`` (what the kernel says can still be created). Each free VF parent says 1
  while the GPU has room, so with VF parents the sum is capped by what NVIDIA's ``description``
  gives as the GPU's ``max_instance`` less the instances that exist;
* SR-IOV vGPU (vGPU 17+): ``used`` counts the GPU's VFs whose ``current_vgpu_type`` is the type;
  ``available`` counts its free VFs that list the type in ``creatable_vgpu_types`` — sysfs says
  only whether one more fits, not how many — capped, where the GPU's nominal memory is known
  (``Gpu.memory_mib``) and the type's name gives its framebuffer (``…-20C``: 20 GiB), by memory
  over framebuffer less the instances that exist. Exact for time-sliced types; an upper bound for
  MIG-backed ones (``…-1-10C``), which the GPU's slices bound further.

Types are named as KubeVirt names them: :func:`resource_name` is the type's name with spaces as
underscores (``GRID A100D-20C`` → ``GRID_A100D-20C``), the suffix of the extended resource
(``nvidia.com/GRID_A100D-20C``) its device plugin advertises for ``permittedHostDevices``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nodeagent.inventory import Inventory, VgpuInfo
from nodeagent.kubenames import label_key_error

MDEV, SRIOV = "mdev", "sriov"
MAX_TYPE_LABELS = 16  # per-type labels on one Node, at most (the metrics carry every pool)
_MAX_INSTANCE = re.compile(r"\bmax_instance=(\d+)")
_FRAMEBUFFER = re.compile(r"-(\d+)[A-Z]+$")  # the last part of a vGPU type name: 20C, 4Q, 1B


@dataclass(frozen=True)
class TypePool:
    gpu: str  # the physical GPU's PCI address
    mode: str  # mdev | sriov
    type_id: str  # "nvidia-696" (the mdev type directory) or "1057" (the vGPU 17 type id)
    name: str | None  # "GRID A100D-20C", "NVIDIA H100XM-20C"; None when no sysfs file names it
    used: int
    available: int

    @property
    def resource(self) -> str:
        return resource_name(self.name or self.type_id)

    def matches(self, wanted: str) -> bool:
        """``wanted`` names this type: its id, its name, or its name with underscores (KubeVirt's forms)."""
        return wanted in (self.type_id, self.name, self.resource)


def resource_name(name: str) -> str:
    """KubeVirt's form of a type name: spaces become underscores (``GRID T4-1Q`` → ``GRID_T4-1Q``)."""
    return name.strip().replace(" ", "_")


def type_pools(vgpu: VgpuInfo, gpu_memory_mib: Mapping[str, int] | None = None) -> list[TypePool]:
    """Every (GPU, type) pool with an instance or room for one, sorted by GPU then type.

    ``gpu_memory_mib``: GPU address → its nominal memory, to cap an SR-IOV pool's ``available``.
    """
    pools: list[TypePool] = []
    pools.extend(_mdev_pools(vgpu))
    pools.extend(_sriov_pools(vgpu, gpu_memory_mib or {}))
    return sorted(pools, key=lambda p: (p.gpu, p.mode, _type_order(p.type_id)))


def inventory_pools(inv: Inventory) -> list[TypePool]:
    """:func:`type_pools` of a node, with its GPUs' nominal memory (what everyone but tests calls)."""
    return type_pools(inv.vgpu, {g.address: g.memory_mib for g in inv.gpus if g.memory_mib})


def framebuffer_mib(name: str | None) -> int | None:
    """A vGPU type's framebuffer from NVIDIA's naming (``NVIDIA H100XM-20C`` → 20 GiB), None when not named so."""
    match = _FRAMEBUFFER.search(name or "")
    return int(match.group(1)) * 1024 if match and int(match.group(1)) > 0 else None


def _type_order(type_id: str) -> tuple[str, int]:
    head, _, tail = type_id.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (type_id, -1)


def max_instance(description: str | None) -> int | None:
    """NVIDIA's ``max_instance=N`` in a type's ``description``: the most instances one GPU holds."""
    match = _MAX_INSTANCE.search(description or "")
    return int(match.group(1)) if match else None


def _mdev_pools(vgpu: VgpuInfo) -> list[TypePool]:
    used: Counter[tuple[str, str]] = Counter()
    available: Counter[tuple[str, str]] = Counter()
    names: dict[tuple[str, str], str | None] = {}
    caps: dict[tuple[str, str], int] = {}
    for parent in vgpu.mdev_parents:
        if parent.gpu is None:
            continue
        for mtype in parent.types:
            key = (parent.gpu, mtype.type_id)
            names.setdefault(key, mtype.name)
            used[key] += len(mtype.instances)
            available[key] += mtype.available_instances or 0
            cap = max_instance(mtype.description)
            if parent.vf and cap is not None:
                caps[key] = cap
    # With one parent per VF each free VF says 1; the GPU holds at most max_instance of the type.
    for key, cap in caps.items():
        available[key] = min(available[key], max(0, cap - used[key]))
    return [TypePool(gpu, MDEV, type_id, names[(gpu, type_id)], used[(gpu, type_id)], available[(gpu, type_id)])
            for gpu, type_id in names if used[(gpu, type_id)] or available[(gpu, type_id)]]


def _sriov_pools(vgpu: VgpuInfo, memory: Mapping[str, int]) -> list[TypePool]:
    used: Counter[tuple[str, int]] = Counter()
    available: Counter[tuple[str, int]] = Counter()
    names: dict[tuple[str, int], str | None] = {}
    for vf in vgpu.sriov_vfs:
        if vf.current_type:
            key = (vf.gpu, vf.current_type)
            used[key] += 1
            if vf.current_name or key not in names:
                names[key] = vf.current_name
        elif vf.current_type == 0:
            for creatable in vf.creatable:
                key = (vf.gpu, creatable.id)
                available[key] += 1
                names[key] = creatable.name
    for (gpu, type_id), count in list(available.items()):
        # Free VFs listing a type only say one more fits; the GPU's memory over the type's framebuffer
        # bounds how many (time-sliced types: exactly; MIG-backed ones hold fewer still).
        framebuffer = framebuffer_mib(names.get((gpu, type_id)))
        if framebuffer and memory.get(gpu):
            available[(gpu, type_id)] = min(count, max(0, memory[gpu] // framebuffer - used[(gpu, type_id)]))
    return [TypePool(gpu, SRIOV, str(type_id), names[(gpu, type_id)], used[(gpu, type_id)],
                     available[(gpu, type_id)]) for gpu, type_id in names]


def vgpu_gpus(vgpu: VgpuInfo) -> list[str]:
    """The physical GPUs that can host vGPUs (mdev parents or vGPU VFs), sorted."""
    gpus = {p.gpu for p in vgpu.mdev_parents if p.gpu} | {vf.gpu for vf in vgpu.sriov_vfs}
    return sorted(gpus)


def instances_per_gpu(pools: list[TypePool]) -> dict[str, int]:
    """GPU → vGPU instances on it, every type together (the ratio a profile's maxPerGpu caps)."""
    per: dict[str, int] = defaultdict(int)
    for pool in pools:
        per[pool.gpu] += pool.used
    return dict(per)


def vgpu_labels(inv: Inventory, own: Callable[[str], str]) -> tuple[dict[str, str], list[str]]:
    """The vGPU labels (docs/labels.md) and warnings for per-type labels left out.

    ``vgpu`` (``"false"`` and nothing else on a node without a vGPU-capable GPU); where there is one,
    ``vgpu-gpus``, ``vgpu-instances``, ``vgpu-available`` (more instances of the types already on
    each GPU), and one ``vgpu.<Type_Name>`` per type with instances (their count), at most
    :data:`MAX_TYPE_LABELS` of them.
    """
    if not inv.vgpu.capable:
        return {own("vgpu"): "false"}, []
    pools = inventory_pools(inv)
    configured = [p for p in pools if p.used]
    labels = {
        own("vgpu"): "true",
        own("vgpu-gpus"): str(len(vgpu_gpus(inv.vgpu))),
        own("vgpu-instances"): str(sum(p.used for p in pools)),
        own("vgpu-available"): str(sum(p.available for p in configured)),
    }
    per_type: Counter[str] = Counter()
    for pool in configured:
        per_type[pool.resource] += pool.used
    warnings: list[str] = []
    for index, resource in enumerate(sorted(per_type)):
        key = own(f"vgpu.{resource}")
        if index >= MAX_TYPE_LABELS:
            warnings.append(f"label {key} not published: more than {MAX_TYPE_LABELS} vGPU types have instances "
                            "(the nodeagent_vgpu_instances metric has every one)")
            continue
        if error := label_key_error(key):
            warnings.append(f"label for vGPU type {resource!r} not published: {error}")
            continue
        labels[key] = str(per_type[resource])
    return labels, warnings


def is_vgpu_type_label(key: str, own: Callable[[str], str]) -> bool:
    """A per-type label key nodeagent computes (a profile may not set one)."""
    return key.startswith(own("vgpu."))
