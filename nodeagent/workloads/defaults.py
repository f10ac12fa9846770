"""The default workload classes: the host half of each reference KubeVirt VM recipe.

Written in the WorkloadClasses document's own form (and parsed by the same code), so that what an
operator writes to override a class reads exactly like the default it replaces.
"""

from __future__ import annotations

import functools
from typing import Any

from nodeagent.workloads.table import WorkloadTable

#: The kubelet managers a VM with dedicated CPUs and NUMA passthrough needs.
_ALIGNED_KUBELET = {"cpuManager": "static", "topologyManager": ["single-numa-node", "restricted"],
                    "memoryManager": "Static"}

DEFAULT_CLASSES: dict[str, Any] = {
    "general": {
        "description": "host-model CPU, balloon, virtio",
        "requires": {"kvm": True},
    },
    "high-density": {
        "description": "shared CPUs overcommitted, balloon on, KSM merging pages",
        "requires": {"kvm": True, "ksm": "running"},
    },
    "database": {
        "description": "4 dedicated cores, 64Gi of 1Gi hugepages, KSM and overcommit off",
        "requires": {"kvm": True, "hugepages": [{"size": "1Gi", "count": 64}], "ksm": "stopped",
                     "kubelet": {"cpuManager": "static"}},
    },
    "hpc": {
        "description": "dedicated CPUs with NUMA passthrough, AVX-512, 1Gi hugepages",
        "requires": {"kvm": True, "hugepages": [{"size": "1Gi", "count": 1}], "cpuFlags": ["avx512f"],
                     "kubelet": _ALIGNED_KUBELET},
    },
    # The recipe wants NVLink between its 2 GPUs, but NVLink is required only where operators ask
    # (gpus.nvlink: true): the host sees NVSwitch fabrics, never NVLink bridges between PCIe cards nor 4-GPU
    # boards without NVSwitches, so a default requirement would mark such NVLinked nodes not ready.
    "ai-training": {
        "description": "2 GPUs passed through, 128Gi of 2Mi hugepages",
        "requires": {"kvm": True, "iommu": True, "gpus": {"passthrough": 2},
                     "hugepages": [{"size": "2Mi", "amount": "128Gi"}]},
    },
    "vgpu": {
        "description": "a shared GPU: a vGPU instance (mediated device or SR-IOV vGPU VF), 1:4-1:8 per GPU",
        "requires": {"kvm": True, "vgpu": {"instances": 1}},
    },
    "realtime": {
        "description": "dedicated isolated CPUs on a PREEMPT_RT host, 1Gi hugepages, tsc-deadline",
        "requires": {"kvm": True, "realtimeKernel": True,
                     "isolatedCpus": {"count": 1, "nohzFull": True, "rcuNocbs": True},
                     "governor": "performance", "realtimeScheduling": True,
                     "hugepages": [{"size": "1Gi", "count": 1}], "cpuFlags": ["tsc_deadline_timer"],
                     "kubelet": _ALIGNED_KUBELET},
    },
}


@functools.cache
def default_table() -> WorkloadTable:
    return WorkloadTable(()).overlay(DEFAULT_CLASSES, "defaults", source="default")
