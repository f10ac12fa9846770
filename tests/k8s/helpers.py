"""Helpers shared by the Kubernetes tests."""

from __future__ import annotations

from typing import Any


def gpu_node_inventory(**changes: Any) -> Any:
    """Two NUMA nodes (8 CPUs each, 2 threads per core), 1Gi pages, 3 H100s: 2 on vfio-pci, 1 on nvidia.

    kubelet reserves CPUs 0 and 8 (one per NUMA node) and runs the restricted topology policy.
    """
    from dataclasses import replace

    from nodeagent.inventory import KubeletInfo, NumaNode
    from tests.factories import make_cpu, make_gpu, make_inventory, pool

    cpus = list(range(16))
    cpu = make_cpu(sockets=2, cores_per_socket=4, threads_per_core=2, logical_cpus=16, online=cpus,
                   flags=["vmx", "avx2", "avx512f", "tsc_deadline_timer", "pdpe1gb"],
                   thread_siblings=[[c, c + 4] for c in (0, 1, 2, 3, 8, 9, 10, 11)],
                   packages={0: list(range(8)), 1: list(range(8, 16))})
    inv = make_inventory(cpu=cpu, hugepages={"2Mi": pool("2Mi", 0), "1Gi": pool("1Gi", 8)})
    pages = {"2Mi": pool("2Mi", 0), "1Gi": pool("1Gi", 4)}
    numa = [
        NumaNode(0, list(range(8)), 64 * 2**30, 40 * 2**30, [10, 21], dict(pages)),
        NumaNode(1, list(range(8, 16)), 64 * 2**30, 40 * 2**30, [21, 10], dict(pages)),
    ]
    gpus = [
        make_gpu("0000:17:00.0", numa_node=0),
        make_gpu("0000:97:00.0", numa_node=1, iommu_group=41),
        make_gpu("0000:ca:00.0", numa_node=1, driver="nvidia", driver_override=None, passthrough_ready=False,
                 passthrough_blockers=["bound to nvidia"]),
    ]
    kubelet = KubeletInfo(config_present=True, config_path="/var/lib/kubelet/config.yaml", cpu_manager_policy="static",
                          reserved_system_cpus=[0, 8], topology_manager_policy="restricted",
                          topology_manager_scope=None, memory_manager_policy=None, running=None, started_at=None)
    inv = replace(inv, numa=numa, gpus=gpus, kubelet=kubelet,
                  iommu=replace(inv.iommu, enabled=True, groups=60))
    return replace(inv, **changes)
