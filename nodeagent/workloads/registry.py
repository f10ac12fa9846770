"""Every requirement kind a workload class may name under ``requires``, in the order reasons are given."""

from __future__ import annotations

from nodeagent.workloads.gpus import GPUS
from nodeagent.workloads.host import (
    CPU_FLAGS,
    GOVERNOR,
    IOMMU,
    ISOLATED_CPUS,
    KSM,
    KVM,
    REALTIME_KERNEL,
    REALTIME_SCHEDULING,
)
from nodeagent.workloads.hugepages import HUGEPAGES
from nodeagent.workloads.kubelet import KUBELET
from nodeagent.workloads.model import RequirementKind
from nodeagent.workloads.vgpu import VGPU

REQUIREMENT_KINDS: tuple[RequirementKind, ...] = (
    KVM, IOMMU, REALTIME_KERNEL, ISOLATED_CPUS, GOVERNOR, REALTIME_SCHEDULING, HUGEPAGES, CPU_FLAGS, KSM, GPUS,
    VGPU, KUBELET,
)
KINDS: dict[str, RequirementKind] = {kind.name: kind for kind in REQUIREMENT_KINDS}
