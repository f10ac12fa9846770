"""The ``vgpu`` requirement: vGPU instances a class's VMs take (mediated devices or SR-IOV vGPU VFs).

``vgpu: {instances: <n>}`` — at least n vGPU instances exist on the node, of any type;
``vgpu: {instances: <n>, type: <type>}`` — of that type: its id (``nvidia-696``, ``1057``), its name
(``GRID A100D-20C``) or KubeVirt's resource form of the name (``GRID_A100D-20C``).

Instances are what KubeVirt's device plugin advertises (``nvidia.com/<Type_Name>`` for mediated
devices): they are created by KubeVirt's ``mediatedDevicesConfiguration``, the vendor's tools, or a
profile's ``spec.gpu.vgpu`` opt-in; a GPU that merely *could* hold instances makes no VM schedulable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodeagent.inventory import Inventory
from nodeagent.vgpupool import inventory_pools, vgpu_gpus
from nodeagent.workloads.model import RequirementError, RequirementKind, require_mapping, shown

KEYS = ("instances", "type")
FORM = "a mapping such as {instances: 1} or {instances: 4, type: GRID_A100D-20C} (keys: instances, type)"
MAX_INSTANCES = 4096


@dataclass(frozen=True)
class VgpuNeeded:
    instances: int
    type: str | None = None


def parse_vgpu(value: Any) -> VgpuNeeded:
    require_mapping(value, KEYS, FORM)
    count = value.get("instances")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_INSTANCES:
        raise RequirementError(f"{shown(count)} is not a number of vGPU instances from 1 to {MAX_INSTANCES}",
                               ".instances")
    wanted = value.get("type")
    if wanted is not None and (not isinstance(wanted, str) or not wanted.strip() or len(wanted) > 128
                               or not wanted.isprintable()):
        raise RequirementError(f"{shown(wanted)} is not a vGPU type: its id (nvidia-696, 1057) or name "
                               "(GRID A100D-20C or GRID_A100D-20C)", ".type")
    return VgpuNeeded(count, wanted.strip() if wanted else None)


def vgpu_shortfalls(inv: Inventory, need: VgpuNeeded) -> list[str]:
    pools = [p for p in inventory_pools(inv) if need.type is None or p.matches(need.type)]
    have = sum(p.used for p in pools)
    if have >= need.instances:
        return []
    what = "vGPU instance" if need.instances == 1 else "vGPU instances"
    of_type = f" of type {need.type}" if need.type else ""
    gpus = len(vgpu_gpus(inv.vgpu))
    if not gpus:
        where = "no GPU here offers vGPU types"
    else:
        room = sum(p.available for p in pools)
        where = (f"{gpus} vGPU-capable GPU{'s' if gpus != 1 else ''} with room for {room} more{of_type}, "
                 "which KubeVirt's mediatedDevicesConfiguration or a profile's spec.gpu.vgpu creates")
    return [f"needs {need.instances} {what}{of_type}, has {have}: {where}"]


def describe_vgpu(need: VgpuNeeded) -> str:
    what = "vGPU instance" if need.instances == 1 else "vGPU instances"
    return f"≥ {need.instances} {what}" + (f" of type {need.type}" if need.type else "")


VGPU = RequirementKind("vgpu", FORM, parse_vgpu, vgpu_shortfalls, describe_vgpu)
