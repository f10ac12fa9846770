"""Inventories built in code for pure-function tests (checks, readiness, labels, metrics).

``make_inventory()`` is a plain single-node KVM host with nothing configured; tests change only
what they are about with ``dataclasses.replace`` through the keyword helpers below.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nodeagent.inventory import (
    CpuInfo,
    Gpu,
    HugepagePool,
    Inventory,
    IommuInfo,
    KernelInfo,
    KsmInfo,
    KubeletInfo,
    KvmInfo,
    MemoryInfo,
    NumaNode,
    PcieLink,
    PrepState,
)


def pool(size: str, total: int, free: int | None = None, *, reserved: int | None = 0) -> HugepagePool:
    kb = {"2Mi": 2048, "1Gi": 1048576}[size]
    return HugepagePool(size, kb, total, total if free is None else free, 0, reserved)


def make_cpu(**changes: Any) -> CpuInfo:
    base = CpuInfo(
        vendor="GenuineIntel", model_name="Test CPU", family=6, model=143, stepping=8, sockets=1,
        cores_per_socket=4, threads_per_core=1, logical_cpus=4, online=[0, 1, 2, 3],
        flags=["vmx", "pdpe1gb", "tsc_deadline_timer"], virtualization="vmx", smt_active=False,
        isolated=[], nohz_full=[], cmdline_isolcpus=None, isolcpus_flags=[], cmdline_nohz_full=None,
        cmdline_rcu_nocbs=None, cpufreq_driver=None, governor=None, governors={},
        thread_siblings=[[0], [1], [2], [3]], packages={0: [0, 1, 2, 3]},
    )
    return replace(base, **changes)


def make_gpu(address: str = "0000:17:00.0", **changes: Any) -> Gpu:
    base = Gpu(
        address=address, vendor_id="10de", device_id="2330", subsystem_vendor_id="10de",
        subsystem_device_id="16c1", class_code="0x030200", name="GH100 [H100 SXM5 80GB]",
        vendor_name="NVIDIA Corporation", driver="vfio-pci", driver_override="vfio-pci", iommu_group=27,
        numa_node=0, local_cpus=[0, 1], boot_vga=False, group_devices=[address], group_members=[],
        passthrough_ready=True, passthrough_blockers=[],
        link=PcieLink(32.0, 16, 32.0, 16), aer={"correctable": 0, "nonfatal": 0, "fatal": 0}, power_state="D0",
    )
    return replace(base, **changes)


def make_inventory(*, cpu: CpuInfo | None = None, hugepages: dict[str, HugepagePool] | None = None,
                   **changes: Any) -> Inventory:
    pools = hugepages if hugepages is not None else {"2Mi": pool("2Mi", 0), "1Gi": pool("1Gi", 0)}
    cpu = cpu or make_cpu()
    base = Inventory(
        hostname="test", root="/fixture", cpu=cpu,
        numa=[NumaNode(0, list(cpu.online), 64 * 2**30, 60 * 2**30, [10],
                       {s: replace(p, reserved=None) for s, p in pools.items()})],
        memory=MemoryInfo(64 * 2**30, 60 * 2**30, 0, 0, pools, "2Mi", "madvise", "madvise"),
        gpus=[], nvswitches=[], nics=[],
        kvm=KvmInfo(True, "file", True, None, None, None, "kvm_intel", True, True, True),
        iommu=IommuInfo(False, 0, None, None, False, "intel_iommu=on"),
        ksm=KsmInfo(True, 0, 0, 0, 0, 0, 0, 100, 20, 1, {}),
        kernel=KernelInfo("6.8.0", "Linux version 6.8.0 SMP PREEMPT_DYNAMIC", False, "PREEMPT_DYNAMIC", "",
                          2, ["cpu", "cpuset", "io", "memory", "pids"], 0, ["kvm", "kvm_intel"]),
        kubelet=KubeletInfo(config_present=False, config_path=None, cpu_manager_policy=None,
                            reserved_system_cpus=None, topology_manager_policy=None, topology_manager_scope=None,
                            memory_manager_policy=None, running=None, started_at=None),
        prep=PrepState(False, 0, False, False, []),
        pci_devices=10,
    )
    return replace(base, **changes)


def with_ksm(inv: Inventory, run: int) -> Inventory:
    return replace(inv, ksm=replace(inv.ksm, run=run))


def gpu_node_inventory(**changes: Any) -> Any:
    """Two NUMA nodes (8 CPUs each, 2 threads per core), 1Gi pages, 3 H100s: 2 on vfio-pci, 1 on nvidia.

    kubelet reserves CPUs 0 and 8 (one per NUMA node) and runs the restricted topology policy.
    """
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
