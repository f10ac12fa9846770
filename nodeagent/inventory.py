"""The Inventory: everything discovery learnt about a node, as plain frozen dataclasses.

Everything downstream (checks, labels, capacity metrics, the prep plan, the renderers) is a
function of an :class:`Inventory`. Nothing downstream reads host files on its own.

Field names are the documented inventory keys (docs/inventory.md), exactly; the rest is ours.
``None`` always means "unknown / not present on this host", never "false".
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Callable
from dataclasses import field
from typing import Any

from nodeagent.value import Value, value

_PLAIN_SCALARS = frozenset((str, int, float, bool, type(None)))
_FIELDS: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}
"""A dataclass → its field names and a getter of all their values at once (one C call)."""


def _one(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """attrgetter's answer as a tuple for zero or one field (attrgetter(name) returns the value)."""
    return (lambda obj: (getattr(obj, names[0]),)) if names else (lambda obj: ())


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and dicts → JSON/YAML-ready dicts and lists; enums → their values.

    A 1024-CPU host's inventory holds some 25,000 values, most of them in lists of CPU numbers:
    scalars and lists of scalars are taken as they are, and each class's field names are looked up
    once (bench/inspect).
    """
    cls = value.__class__
    if cls in _PLAIN_SCALARS:
        return value
    if cls is list or cls is tuple:
        if all(v.__class__ in _PLAIN_SCALARS for v in value):
            return list(value)
        return [to_plain(v) for v in value]
    fields = _FIELDS.get(cls)
    if fields is None and dataclasses.is_dataclass(cls):
        names = tuple(f.name for f in dataclasses.fields(cls))
        fields = _FIELDS[cls] = (names, operator.attrgetter(*names) if len(names) > 1 else _one(names))
    if fields is not None:
        names, values = fields
        # Scalars (most fields) are taken as they are, without a call each.
        return {name: item if item.__class__ in _PLAIN_SCALARS else to_plain(item)
                for name, item in zip(names, values(value), strict=True)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


class Plain(Value):
    """``to_dict()`` for every inventory value class (and the shared frozen behaviour of Value)."""

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


# --- CPU -------------------------------------------------------------------------------------


@value
class CpufreqPolicy(Plain):
    """One cpufreq policy: the CPUs that share a governor and a frequency (a whole cluster on ARM)."""

    name: str  # "policy0", or "cpu3" on kernels with per-CPU cpuN/cpufreq/ directories only
    path: str  # the directory holding scaling_governor
    cpus: list[int]  # affected_cpus: the online CPUs it governs
    governor: str | None
    available: list[str]  # scaling_available_governors


@value
class CpuInfo(Plain):
    vendor: str | None
    model_name: str | None
    family: int | None
    model: int | None
    stepping: int | None
    sockets: int
    cores_per_socket: int | None  # None when packages differ (never a product that disagrees with the CPUs)
    threads_per_core: int
    logical_cpus: int
    online: list[int]
    flags: list[str]
    virtualization: str | None  # "vmx" | "svm" | None
    smt_active: bool | None
    isolated: list[int]  # /sys/devices/system/cpu/isolated
    nohz_full: list[int]  # /sys/devices/system/cpu/nohz_full
    cmdline_isolcpus: list[int] | None  # None: not on the command line
    isolcpus_flags: list[str]
    cmdline_nohz_full: list[int] | None
    cmdline_rcu_nocbs: list[int] | None
    cpufreq_driver: str | None
    governor: str | None  # one name, "mixed", or None without cpufreq
    governors: dict[str, list[int]]  # governor → CPUs
    thread_siblings: list[list[int]]  # one list per physical core
    packages: dict[int, list[int]]  # socket id → CPUs
    # logical_cpus counts the present CPUs (lscpu's "CPU(s)"); online lists those the scheduler uses.
    architecture: str | None = None  # x86_64 | aarch64 | ppc64le | s390x | riscv64 | loongarch64
    present: list[int] = field(default_factory=list)  # /sys/devices/system/cpu/present
    cores: int | None = None  # physical cores with an online thread
    cores_per_package: dict[int, int] = field(default_factory=dict)  # socket id → cores (uneven on some arm64)
    model_names: list[str] = field(default_factory=list)  # every CPU type (big.LITTLE has several)
    cpufreq_policies: list[CpufreqPolicy] = field(default_factory=list)

    def has_flag(self, flag: str) -> bool:
        return flag in self.flags


# --- NUMA and memory -------------------------------------------------------------------------


@value
class HugepagePool(Plain):
    """Pages of one size, on one NUMA node or on the whole host. Counts are pages, not bytes."""

    size: str  # "2Mi", "1Gi"
    size_kb: int
    total: int | None
    free: int | None
    surplus: int | None
    reserved: int | None = None  # only meaningful host-wide

    @property
    def total_bytes(self) -> int | None:
        return None if self.total is None else self.total * self.size_kb * 1024


@value
class NumaNode(Plain):
    id: int
    cpus: list[int]
    memory_total_bytes: int | None
    memory_free_bytes: int | None
    distances: list[int]
    hugepages: dict[str, HugepagePool]
    cpus_source: str | None = "cpulist"  # cpulist | cpumap | links; None: unknown (a warning says why)


@value
class MemoryInfo(Plain):
    total_bytes: int | None
    available_bytes: int | None
    swap_total_bytes: int | None
    swap_free_bytes: int | None
    hugepages: dict[str, HugepagePool]  # host-wide, with reserved and surplus
    default_hugepage_size: str | None
    thp_enabled: str | None  # "always" | "madvise" | "never"
    thp_defrag: str | None


# --- PCI, GPUs, NICs -------------------------------------------------------------------------


@value
class PcieLink(Plain):
    current_speed_gts: float | None
    current_width: int | None
    max_speed_gts: float | None
    max_width: int | None

    @property
    def degraded(self) -> bool | None:
        """Trained below what the device supports (the classic riser/slot fault)."""
        known = [self.current_speed_gts, self.max_speed_gts, self.current_width, self.max_width]
        if any(v is None for v in known):
            return None
        return bool(self.current_speed_gts < self.max_speed_gts or self.current_width < self.max_width)  # type: ignore[operator]


@value
class IommuGroupMember(Plain):
    address: str
    vendor_id: str | None
    device_id: str | None
    class_code: str | None  # "0x030200"
    kind: str  # gpu | audio | usb | serial | nvswitch | bridge | network | storage | other
    driver: str | None

    @property
    def is_bridge(self) -> bool:
        return self.kind == "bridge"


NVIDIA_VENDOR_ID = "10de"  # PCI vendor id, as Gpu.vendor_id holds it (four lower-case hex digits)


@value
class Gpu(Plain):
    address: str
    vendor_id: str
    device_id: str
    subsystem_vendor_id: str | None
    subsystem_device_id: str | None
    class_code: str
    name: str
    vendor_name: str | None
    driver: str | None
    driver_override: str | None
    iommu_group: int | None
    numa_node: int | None
    local_cpus: list[int]
    boot_vga: bool
    group_devices: list[str]  # every member of the IOMMU group, itself included
    group_members: list[IommuGroupMember]
    passthrough_ready: bool
    passthrough_blockers: list[str]  # why it is not passthrough-ready (empty when ready)
    link: PcieLink
    aer: dict[str, int]  # severity (correctable|nonfatal|fatal) → TOTAL_ERR_* counter
    power_state: str | None
    # What the ids say (discover/gpuproducts.py): the product as KubeVirt's GPU device plugin names its
    # resource, the SKU's nominal memory (None: not in the table), and the NVLink fabric it shares
    # with other GPUs of this host through NVSwitches (None: none the host can see; discover/nvlink.py).
    product: str | None = None
    memory_mib: int | None = None
    nvlink_fabric: str | None = None


@value
class NvSwitch(Plain):
    """An NVSwitch's PCI function (HGX A100/H100 baseboards): what its binding and IOMMU group say."""

    address: str
    device_id: str
    name: str
    generation: int | None  # 2 (A100), 3 (H100); None: an id nodeagent does not know
    driver: str | None
    iommu_group: int | None
    numa_node: int | None
    group_members: list[IommuGroupMember]
    passthrough_ready: bool  # the GPU rule: on vfio with every non-bridge member of its group, IOMMU on
    passthrough_blockers: list[str]
    power_state: str | None

    @property
    def vendor_id(self) -> str:
        return NVIDIA_VENDOR_ID

    @property
    def boot_vga(self) -> bool:
        """Never: a bridge-class function drives no display (prep asks every device it moves)."""
        return False


@value
class NvlinkFabric(Plain):
    """GPUs that share NVLink through this host's NVSwitches (one per NVSwitch generation present).

    ``mode``: who drives the NVSwitches — ``host`` (all on a host driver: Fabric Manager on the host,
    the shared-NVSwitch model or bare metal), ``passthrough`` (all passthrough-ready: the full
    passthrough model, the NVSwitches go to the VM with the GPUs), ``mixed`` (neither: some on
    vfio, some not, or unbound — no VM gets a working fabric).
    """

    id: str  # "nvswitch-gen3"
    generation: int
    nvswitches: list[str]
    gpus: list[str]
    passthrough_gpus: list[str]
    mode: str  # host | passthrough | mixed


@value
class Nic(Plain):
    name: str
    address: str | None  # PCI address, None for non-PCI devices
    driver: str | None
    numa_node: int | None
    mac: str | None
    operstate: str | None  # sysfs operstate
    speed_mbps: int | None
    mtu: int | None
    sriov_totalvfs: int | None  # None: not SR-IOV capable
    sriov_numvfs: int | None
    vfs: list[str]  # PCI addresses of the VFs
    physfn: str | None  # for a VF: its PF's address
    link_up: bool | None  # from netlink on the live host; None elsewhere


# --- vGPU: mediated devices and NVIDIA's SR-IOV vGPU ------------------------------------------


@value
class MdevType(Plain):
    """One ``mdev_supported_types/<type_id>`` of a parent (Documentation/driver-api/vfio-mediated-device.rst)."""

    type_id: str  # the directory: "<driver>-<vendor's type>", e.g. "nvidia-696", "i915-GVTg_V5_4"
    name: str | None  # the human name ("GRID A100D-20C"); KubeVirt's mdevNameSelector matches it
    device_api: str | None  # "vfio-pci", "vfio-ccw", …
    available_instances: int | None  # how many more the kernel says can be created now
    description: str | None
    instances: list[str]  # UUIDs of the existing instances of this type on this parent


@value
class MdevParent(Plain):
    """A device registered with the mediated-device framework (``/sys/class/mdev_bus/<address>``)."""

    address: str  # its name under mdev_bus: a PCI address, or another bus's id (ccw, ap)
    driver: str | None
    gpu: str | None  # the physical GPU it belongs to: itself, or for a VF its PF; None: not a GPU
    vf: bool  # an SR-IOV virtual function (Ampere/Ada vGPU: one vGPU per VF)
    types: list[MdevType]


@value
class MdevInstance(Plain):
    """An existing mediated device (``/sys/bus/mdev/devices/<uuid>``), whoever created it."""

    uuid: str
    parent: str | None  # the parent's name (the directory the instance lives in)
    type_id: str | None  # from its ``mdev_type`` link
    iommu_group: int | None


@value
class VgpuTypeId(Plain):
    """One line of a VF's ``nvidia/creatable_vgpu_types`` (``<id> : <name>``)."""

    id: int
    name: str


@value
class VgpuVf(Plain):
    """An SR-IOV VF of an NVIDIA GPU under the vGPU 17+ host driver (``<vf>/nvidia/``; no mdev)."""

    address: str
    gpu: str  # its PF, the physical GPU
    index: int  # N of the PF's virtfnN
    driver: str | None
    current_type: int | None  # nvidia/current_vgpu_type: 0 none; None unreadable
    current_name: str | None  # the type's name when some VF of the GPU lists it
    creatable: list[VgpuTypeId]  # what can be created on this VF now


@value
class VgpuInfo(Plain):
    """Every vGPU-capable device of the node and the instances that exist (inventory key ``vgpu``)."""

    mdev_parents: list[MdevParent] = field(default_factory=list)
    mdevs: list[MdevInstance] = field(default_factory=list)
    sriov_vfs: list[VgpuVf] = field(default_factory=list)

    @property
    def capable(self) -> bool:
        """A GPU here can host vGPUs (an mdev parent that is a GPU, or a vGPU VF)."""
        return any(p.gpu for p in self.mdev_parents) or bool(self.sriov_vfs)


# --- virtualization --------------------------------------------------------------------------


@value
class KvmInfo(Plain):
    available: bool
    device: str | None  # "char" (a real device), "file" (a fixture's stand-in), None
    accessible: bool
    api_version: int | None
    max_vcpus: int | None
    recommended_vcpus: int | None
    module: str | None  # kvm_intel | kvm_amd | …
    nested: bool | None
    vhost_net: bool
    tun: bool


@value
class IommuInfo(Plain):
    enabled: bool
    groups: int
    firmware_table: str | None  # "DMAR" (Intel VT-d) | "IVRS" (AMD-Vi) | None
    cmdline_enabled: bool | None  # intel_iommu=on / amd_iommu=on given (None: neither mentioned)
    passthrough_mode: bool  # iommu=pt
    enable_argument: str | None  # the argument that turns it on for this CPU vendor


@value
class KsmInfo(Plain):
    available: bool
    run: int | None
    pages_shared: int | None
    pages_sharing: int | None
    pages_unshared: int | None
    pages_volatile: int | None
    full_scans: int | None
    pages_to_scan: int | None
    sleep_millisecs: int | None
    merge_across_nodes: int | None
    counters: dict[str, int]  # every integer file under /sys/kernel/mm/ksm

    @property
    def running(self) -> bool:
        """ksmd is merging pages (run=1); run=2, "stop and unmerge", counts as off."""
        return self.run == 1


# --- kernel and node state -------------------------------------------------------------------


@value
class KernelInfo(Plain):
    release: str | None
    version: str | None  # /proc/version
    realtime: bool
    preempt_model: str | None  # "PREEMPT_RT" | "PREEMPT_DYNAMIC" | "PREEMPT" | None
    cmdline: str
    cgroup_version: int | None  # 2 = unified; 1 = legacy or hybrid
    cgroup_controllers: list[str]
    numa_balancing: int | None
    modules: list[str]  # loaded modules among those nodeagent cares about
    sched_rt_runtime_us: int | None = None  # kernel.sched_rt_runtime_us; -1: RT tasks unthrottled


@value
class KubeletInfo(Plain):
    config_present: bool
    config_path: str | None
    cpu_manager_policy: str | None
    reserved_system_cpus: list[int] | None
    topology_manager_policy: str | None
    topology_manager_scope: str | None
    memory_manager_policy: str | None
    running: bool | None  # None: not looked (not the live host)
    started_at: float | None  # epoch seconds, when running
    flavour: str | None = None  # kubeadm | k3s | rke2 | microk8s | openshift (from where the config is)
    config_readable: bool = True  # False: the config exists but is not readable by this user


@value
class PrepState(Plain):
    """What nodeagent's own earlier `apply` left behind: pending reboot, kubelet restart, journal."""

    journal_present: bool
    journal_changes: int
    reboot_required: bool
    kubelet_restart_required: bool
    pending_boot_args: list[str]
    applied_at: float | None = None


# --- the hub ---------------------------------------------------------------------------------


@value
class Inventory(Plain):
    hostname: str | None
    root: str
    cpu: CpuInfo
    numa: list[NumaNode]
    memory: MemoryInfo
    gpus: list[Gpu]
    nvswitches: list[str]
    nics: list[Nic]
    kvm: KvmInfo
    iommu: IommuInfo
    ksm: KsmInfo
    kernel: KernelInfo
    kubelet: KubeletInfo
    prep: PrepState
    pci_devices: int
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # present, but not readable by this user
    privileged: bool | None = None  # discovery ran as root (None: not known)
    nvswitch_devices: list[NvSwitch] = field(default_factory=list)  # the NVSwitches of ``nvswitches``, read
    nvlink_fabrics: list[NvlinkFabric] = field(default_factory=list)
    vgpu: VgpuInfo = field(default_factory=VgpuInfo)  # mediated devices and SR-IOV vGPU VFs

    def numa_node(self, node_id: int) -> NumaNode | None:
        return next((n for n in self.numa if n.id == node_id), None)

    def hugepages_configured(self, size: str) -> bool:
        """Pages of that size are allocated on the node (the labels' and readiness' meaning)."""
        pool = self.memory.hugepages.get(size)
        return bool(pool and pool.total)

    @property
    def passthrough_gpus(self) -> list[Gpu]:
        return [g for g in self.gpus if g.passthrough_ready]
