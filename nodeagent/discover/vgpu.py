"""vGPU: mediated-device parents, their types and instances; NVIDIA's SR-IOV vGPU VFs.

Two kernel interfaces, both read from sysfs alone:

* the mediated-device framework (Documentation/driver-api/vfio-mediated-device.rst and
  Documentation/ABI/testing/sysfs-bus-vfio-mdev): every parent is linked from
  ``/sys/class/mdev_bus/<name>``; each of its ``mdev_supported_types/<type-id>/`` has ``name``,
  ``available_instances``, ``device_api``, optionally ``description``, and ``devices/`` linking
  the instances of that type; every instance is linked from ``/sys/bus/mdev/devices/<uuid>``
  into its parent's directory and links its type as ``mdev_type``. NVIDIA's vGPU host driver up
  to vGPU 16 (Turing: the GPU itself is the parent; Ampere/Ada: each SR-IOV VF is one), Intel
  GVT-g and s390's vfio-ccw/vfio-ap use it;
* NVIDIA's vGPU 17+ host driver on Hopper/Ada/Blackwell (the vendor-specific VFIO framework, no
  mdev): each SR-IOV VF of the GPU has ``nvidia/creatable_vgpu_types`` (``<id> : <name>`` lines,
  after an ``ID : vGPU Name`` header) and ``nvidia/current_vgpu_type`` (the type id, 0 for none).

Instances are reported whoever created them (KubeVirt's virt-handler, the vendor's tools, an
operator, nodeagent): ownership is prep's journal's business, not discovery's.
"""

from __future__ import annotations

import os

from nodeagent.discover.pci import GPU_CLASS_PREFIXES, PCI_DEVICES, iommu_group_of, vf_addresses
from nodeagent.host import Host
from nodeagent.inventory import Gpu, MdevInstance, MdevParent, MdevType, VgpuInfo, VgpuTypeId, VgpuVf

MDEV_BUS = "/sys/class/mdev_bus"
MDEV_DEVICES = "/sys/bus/mdev/devices"
VGPU_DIR = "nvidia"  # a VF's vendor-specific vGPU directory (vGPU 17+)
CREATABLE = "creatable_vgpu_types"
CURRENT = "current_vgpu_type"


def discover_vgpu(host: Host, gpus: list[Gpu]) -> VgpuInfo:
    """Every mdev parent and instance, and the vGPU VFs of ``gpus`` (the physical GPUs)."""
    parents = [_parent(host, name) for name in host.listdir(MDEV_BUS)]
    mdevs = [_instance(host, uuid) for uuid in host.listdir(MDEV_DEVICES)]
    vfs: list[VgpuVf] = []
    for gpu in gpus:
        vfs.extend(_vgpu_vfs(host, gpu.address))
    return VgpuInfo(mdev_parents=parents, mdevs=mdevs, sriov_vfs=vfs)


def _parent(host: Host, name: str) -> MdevParent:
    base = f"{MDEV_BUS}/{name}"
    physfn = host.link_name(f"{base}/physfn")
    class_code = host.read_str(f"{base}/class") or ""
    types = [_type(host, f"{base}/mdev_supported_types/{type_id}", type_id)
             for type_id in host.listdir(f"{base}/mdev_supported_types")]
    return MdevParent(address=name, driver=host.link_name(f"{base}/driver"),
                      gpu=(physfn or name) if class_code.startswith(GPU_CLASS_PREFIXES) else None,
                      vf=physfn is not None, types=types)


def _type(host: Host, path: str, type_id: str) -> MdevType:
    available = host.read_int(f"{path}/available_instances")
    return MdevType(type_id=type_id, name=host.read_str(f"{path}/name"), device_api=host.read_str(f"{path}/device_api"),
                    available_instances=available if available is None or available >= 0 else None,
                    description=host.read_str(f"{path}/description"), instances=host.listdir(f"{path}/devices"))


def _instance(host: Host, uuid: str) -> MdevInstance:
    device = f"{MDEV_DEVICES}/{uuid}"
    real = host.realpath(device)
    parent = os.path.basename(os.path.dirname(real)) if real else None
    return MdevInstance(uuid=uuid, parent=parent, type_id=host.link_name(f"{device}/mdev_type"),
                        iommu_group=iommu_group_of(host, device))


def parse_creatable(text: str | None) -> list[VgpuTypeId]:
    """``creatable_vgpu_types``: ``<id> : <name>`` lines; the header and anything else skipped."""
    types: list[VgpuTypeId] = []
    for line in (text or "").splitlines():
        head, sep, name = line.partition(":")
        head, name = head.strip(), name.strip()
        if sep and head.isdigit() and name:
            types.append(VgpuTypeId(int(head), name))
    return types


def _vgpu_vfs(host: Host, pf: str) -> list[VgpuVf]:
    raw: list[tuple[int, str, int | None, list[VgpuTypeId]]] = []
    for index, address in vf_addresses(host, f"{PCI_DEVICES}/{pf}"):
        directory = f"{PCI_DEVICES}/{address}/{VGPU_DIR}"
        if not host.exists(f"{directory}/{CURRENT}"):
            continue
        current = host.read_int(f"{directory}/{CURRENT}")
        raw.append((index, address, current, parse_creatable(host.read_text(f"{directory}/{CREATABLE}"))))
    names = {t.id: t.name for _, _, _, creatable in raw for t in creatable}
    return [VgpuVf(address=address, gpu=pf, index=index, driver=host.link_name(f"{PCI_DEVICES}/{address}/driver"),
                   current_type=current, current_name=names.get(current) if current else None, creatable=creatable)
            for index, address, current, creatable in raw]

