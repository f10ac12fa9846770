"""The exact labels of every fixture host, and which hosts each VM recipe's node selector picks.

The expected sets are written by hand from ``fixtures/specs/*.yaml`` and CONTRACT §4 (the reasoning
is in the comments), never by calling the code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.labels import LabelConfig, compute_labels
from tests.support.hosts import FIXTURE_HOSTS

NFD = "feature.node.kubernetes.io"
NA = "nodeagent.io"


def cpuid(*names: str) -> dict[str, str]:
    return {f"{NFD}/cpu-cpuid.{n}": "true" for n in names}


def own(**values: str) -> dict[str, str]:
    return {f"{NA}/{k.replace('_', '-')}": v for k, v in values.items()}


def ready(*workloads: str) -> dict[str, str]:
    every = ("general", "high-density", "database", "hpc", "ai-training", "vgpu", "realtime")
    return {f"{NA}/ready-{w}": "true" if w in workloads else "false" for w in every}


def gpu_product(product: str, count: int, *, nvlink_gpus: str, memory_mib: str | None = None,
                nvlink_mode: str | None = None) -> dict[str, str]:
    """The passthrough GPUs' product, per-product count, memory and NVLink labels of one-product hosts."""
    labels = {f"{NA}/gpu-passthrough.product": product, f"{NA}/gpu-passthrough-count.{product}": str(count),
              f"{NA}/gpu-passthrough.nvlink-gpus": nvlink_gpus}
    if memory_mib is not None:
        labels[f"{NA}/gpu-passthrough.memory-mib"] = memory_mib
    if nvlink_mode is not None:
        labels[f"{NA}/gpu-passthrough.nvlink-mode"] = nvlink_mode
    return labels


# The CPUs two fixture hosts each share: their flags, written once. Sapphire Rapids: intel-2s-8gpu and
# hgx-h100-nvswitch; Ice Lake-SP: rt-isolated (which adds RTSCHED) and db-kubelet-defaults.
SAPPHIRE_RAPIDS = cpuid("AVX2", "AVX512F", "AVX512DQ", "AVX512BW", "AVX512CD", "AVX512VL", "AVX512BF16", "AVX512VNNI",
                        "AMXBF16", "AMXINT8", "AMXTILE", "FMA3", "SHA", "AESNI", "VMX")
ICE_LAKE_SP = cpuid("AVX2", "AVX512F", "AVX512DQ", "AVX512BW", "AVX512CD", "AVX512VL", "AVX512VNNI",
                    "FMA3", "SHA", "AESNI", "VMX")
NOTHING_PENDING = own(reboot_required="false", kubelet_restart_required="false")
# No GPU with mdev types or vGPU VFs on these hosts (the H100s of intel-2s-8gpu have no VFs enabled):
# only the flag, none of the vGPU counts (tests/test_vgpu.py has the vGPU hosts).
NO_VGPU = own(vgpu="false")

EXPECTED: dict[str, dict[str, str]] = {
    # Sapphire Rapids: every named flag but SVM (Intel); 2 sockets x 56 cores x 2 threads, 2 NUMA nodes;
    # 64+64 1Gi pages, no 2Mi; KSM off; 4 H100 on vfio-pci, each alone in its group behind the PEX
    # switch → 4 passthrough-ready; governor performance; kvm_intel nested=Y; kubelet: static CPU manager,
    # restricted topology manager, memory manager None.
    # Ready: general (KVM), database (128 ≥ 64 × 1Gi, KSM off, static CPU manager); not high-density (KSM
    # off), hpc (memory manager None), ai-training (no 2Mi pages: 128Gi of them needed) nor realtime.
    "intel-2s-8gpu": {
        **SAPPHIRE_RAPIDS,
        f"{NFD}/cpu-hardware_multithreading": "true",
        f"{NFD}/memory-numa": "true",
        f"{NFD}/numa": "true",
        "topology.kubernetes.io/numa-nodes": "2",
        f"{NA}/numa": "true", f"{NA}/numa-nodes": "2",  # the recipe keys' mirrors
        **own(kvm="true", kvm_nested="true", iommu="true", rt_kernel="false", ksm="false",
              isolated_cpus="0", cpu_governor="performance", gpu_passthrough="true", gpu_passthrough_count="4"),
        f"{NA}/hugepages-2Mi": "false", f"{NA}/hugepages-1Gi": "true",
        **ready("general", "database"),
        **NOTHING_PENDING,
        # The 4 passthrough-ready GPUs are 10de:2330, pci.ids "GH100 [H100 SXM5 80GB]" (80 GiB nominal); all
        # 8 H100 SXM5 sit with the 4 gen-3 NVSwitches (10de:22a3, all on nvidia: the host drives the fabric).
        **gpu_product("GH100_H100_SXM5_80GB", 4, memory_mib="81920", nvlink_gpus="4", nvlink_mode="host"),
        **NO_VGPU,
    },
    # Genoa: AVX-512 incl. BF16/VNNI, no AMX, SVM not VMX; NPS4 → 4 NUMA nodes; 2Mi pages on nodes 0-1;
    # KSM running; governors performance + schedutil → mixed; RTX 4090 + its audio both on vfio-pci →
    # 1 passthrough-ready GPU (the Radeon shares its group with USB on host drivers).
    # Ready: general, high-density (KSM on); not ai-training (1 GPU of 2, 16Gi of 2Mi pages of 128Gi);
    # no 1Gi → no database/hpc. No kubelet: its managers are unknown, which blocks nothing.
    "amd-nps4-consumer": {
        **cpuid("AVX2", "AVX512F", "AVX512DQ", "AVX512BW", "AVX512CD", "AVX512VL", "AVX512BF16", "AVX512VNNI",
                "FMA3", "SHA", "AESNI", "SVM"),
        f"{NFD}/cpu-hardware_multithreading": "true",
        f"{NFD}/memory-numa": "true",
        f"{NFD}/numa": "true",
        "topology.kubernetes.io/numa-nodes": "4",
        f"{NA}/numa": "true", f"{NA}/numa-nodes": "4",  # the recipe keys' mirrors
        **own(kvm="true", kvm_nested="true", iommu="true", rt_kernel="false", ksm="true",
              isolated_cpus="0", cpu_governor="mixed", gpu_passthrough="true", gpu_passthrough_count="1"),
        f"{NA}/hugepages-2Mi": "true", f"{NA}/hugepages-1Gi": "false",
        **ready("general", "high-density"),
        **NOTHING_PENDING,
        # RTX 4090 (10de:2684, "AD102 [GeForce RTX 4090]"): not a datacenter SKU, so no memory label; no NVSwitch.
        **gpu_product("AD102_GEFORCE_RTX_4090", 1, nvlink_gpus="0"),
        **NO_VGPU,
    },
    # The same Sapphire Rapids pair as intel-2s-8gpu (same flags, 2 NUMA nodes, performance), before prep: all 8
    # H100 SXM5 and the 4 NVSwitches on nvidia → no passthrough-ready GPU, so no product labels; 65536 2Mi
    # pages (32768 per node), no 1Gi; KSM off; no kubelet (managers unknown: not blocking).
    # Ready: general only (ai-training lacks its 2 passthrough-ready GPUs; database/hpc lack 1Gi pages).
    "hgx-h100-nvswitch": {
        **SAPPHIRE_RAPIDS,
        f"{NFD}/cpu-hardware_multithreading": "true",
        f"{NFD}/memory-numa": "true",
        f"{NFD}/numa": "true",
        "topology.kubernetes.io/numa-nodes": "2",
        f"{NA}/numa": "true", f"{NA}/numa-nodes": "2",  # the recipe keys' mirrors
        **own(kvm="true", kvm_nested="true", iommu="true", rt_kernel="false", ksm="false",
              isolated_cpus="0", cpu_governor="performance", gpu_passthrough="false", gpu_passthrough_count="0"),
        f"{NA}/hugepages-2Mi": "true", f"{NA}/hugepages-1Gi": "false",
        **ready("general"),
        **NOTHING_PENDING,
        **NO_VGPU,
    },
    # Ice Lake-SP: AVX-512 with VNNI, no BF16, no AMX; PREEMPT_RT → RTSCHED, rt-kernel; one NUMA node;
    # CPUs 2-11,14-23 isolated (20) and covered by nohz_full and rcu_nocbs, governor performance,
    # 16 x 1Gi, tsc_deadline_timer, sched_rt_runtime_us -1, kubelet static / single-numa-node / Static →
    # ready for realtime, hence `realtime: "true"`; also hpc; not database (16 of 64 1Gi pages).
    "rt-isolated": {
        **ICE_LAKE_SP, **cpuid("RTSCHED"),
        f"{NFD}/cpu-hardware_multithreading": "true",
        f"{NFD}/numa": "false",
        "topology.kubernetes.io/numa-nodes": "1",
        f"{NA}/numa": "false", f"{NA}/numa-nodes": "1",  # the recipe keys' mirrors
        "realtime": "true",
        f"{NA}/rt-sched": "true", f"{NA}/realtime": "true",
        **own(kvm="true", kvm_nested="false", iommu="true", rt_kernel="true", ksm="false",
              isolated_cpus="20", cpu_governor="performance", gpu_passthrough="false", gpu_passthrough_count="0"),
        f"{NA}/hugepages-2Mi": "false", f"{NA}/hugepages-1Gi": "true",
        **ready("general", "hpc", "realtime"),
        **NOTHING_PENDING,
        **NO_VGPU,
    },
    # rt-isolated's Ice Lake-SP on a stock PREEMPT_DYNAMIC kernel: same flags but no RTSCHED; no isolated
    # CPUs; 64 x 1Gi pages and KSM off, as the database recipe wants, but kubeadm's kubelet config sets no
    # manager policy, so the CPU manager is the kubelet's default none → not ready for database (nor hpc).
    "db-kubelet-defaults": {
        **ICE_LAKE_SP,
        f"{NFD}/cpu-hardware_multithreading": "true",
        f"{NFD}/numa": "false",
        "topology.kubernetes.io/numa-nodes": "1",
        f"{NA}/numa": "false", f"{NA}/numa-nodes": "1",  # the recipe keys' mirrors
        **own(kvm="true", kvm_nested="false", iommu="true", rt_kernel="false", ksm="false",
              isolated_cpus="0", cpu_governor="performance", gpu_passthrough="false", gpu_passthrough_count="0"),
        f"{NA}/hugepages-2Mi": "false", f"{NA}/hugepages-1Gi": "true",
        **ready("general"),
        **NOTHING_PENDING,
        **NO_VGPU,
    },
    # Kaby Lake desktop with VT-x off: no vmx flag (and no KVM), AVX2/FMA/AES only; no IOMMU; no cpufreq
    # → no governor label; GTX 1060 on nouveau → not passthrough-ready. Nothing is ready.
    "desktop-no-iommu": {
        **cpuid("AVX2", "FMA3", "AESNI"),
        f"{NFD}/cpu-hardware_multithreading": "true",
        f"{NFD}/numa": "false",
        "topology.kubernetes.io/numa-nodes": "1",
        f"{NA}/numa": "false", f"{NA}/numa-nodes": "1",  # the recipe keys' mirrors
        **own(kvm="false", kvm_nested="false", iommu="false", rt_kernel="false", ksm="false",
              isolated_cpus="0", gpu_passthrough="false", gpu_passthrough_count="0"),
        f"{NA}/hugepages-2Mi": "false", f"{NA}/hugepages-1Gi": "false",
        **ready(),
        **NOTHING_PENDING,
        **NO_VGPU,
    },
    # A 2-vCPU Icelake guest: AVX-512 (no BF16/AMX), no vmx (no nested virt), 1 thread per core; no KVM,
    # no IOMMU, no cpufreq, no PCI devices. Nothing is ready.
    "minimal": {
        **cpuid("AVX2", "AVX512F", "AVX512DQ", "AVX512BW", "AVX512CD", "AVX512VL", "AVX512VNNI",
                "FMA3", "SHA", "AESNI"),
        f"{NFD}/cpu-hardware_multithreading": "false",
        f"{NFD}/numa": "false",
        "topology.kubernetes.io/numa-nodes": "1",
        f"{NA}/numa": "false", f"{NA}/numa-nodes": "1",  # the recipe keys' mirrors
        **own(kvm="false", kvm_nested="false", iommu="false", rt_kernel="false", ksm="false",
              isolated_cpus="0", gpu_passthrough="false", gpu_passthrough_count="0"),
        f"{NA}/hugepages-2Mi": "false", f"{NA}/hugepages-1Gi": "false",
        **ready(),
        **NOTHING_PENDING,
        **NO_VGPU,
    },
}


@pytest.fixture(scope="module")
def host_labels(host_trees: Callable[[str], Any]) -> dict[str, dict[str, str]]:
    return {name: compute_labels(discover(Host(str(host_trees(name))))).labels for name in FIXTURE_HOSTS}


def test_every_fixture_host_has_an_expectation() -> None:
    assert set(EXPECTED) == set(FIXTURE_HOSTS)


@pytest.mark.parametrize("name", FIXTURE_HOSTS)
def test_exact_label_set(host_labels: dict[str, dict[str, str]], name: str) -> None:
    assert host_labels[name] == EXPECTED[name]


# --- the VM recipes' node selectors (WORKLOADS.md), and exactly which hosts they pick -----------------


def selects(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize(("selector", "hosts"), [
    # ultra-perf (pinning + hugepages + NUMA)
    ({f"{NFD}/numa": "true"}, {"intel-2s-8gpu", "amd-nps4-consumer", "hgx-h100-nvswitch"}),
    # HPC / MPI: 2 NUMA nodes
    ({"topology.kubernetes.io/numa-nodes": "2"}, {"intel-2s-8gpu", "hgx-h100-nvswitch"}),
    # realtime / NFV and HPC
    ({"realtime": "true"}, {"rt-isolated"}),
    # HPC: AVX-512 (the minimal guest has it too: it is a CPU flag, not readiness)
    ({f"{NFD}/cpu-cpuid.AVX512F": "true"}, {"intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "minimal",
                                            "db-kubelet-defaults", "hgx-h100-nvswitch"}),
    # realtime / NFV
    ({f"{NFD}/cpu-cpuid.RTSCHED": "true"}, {"rt-isolated"}),
    # the HPC recipe's selectors together: no fixture host is both realtime and 2-socket
    ({"realtime": "true", f"{NFD}/cpu-cpuid.AVX512F": "true", "topology.kubernetes.io/numa-nodes": "2"}, set()),
    # the realtime recipe's selectors together
    ({"realtime": "true", f"{NFD}/cpu-cpuid.RTSCHED": "true"}, {"rt-isolated"}),
])
def test_seed_selector_picks_exactly(host_labels: dict[str, dict[str, str]], selector: dict[str, str],
                                     hosts: set[str]) -> None:
    assert {name for name, labels in host_labels.items() if selects(labels, selector)} == hosts


def test_without_nfd_labels_the_seed_selectors_still_work(host_trees: Callable[[str], Any]) -> None:
    """On a cluster running NFD, nodeagent drops NFD's own names but keeps the ones NFD lacks."""
    config = LabelConfig(nfd_compatible=False)
    labels = compute_labels(discover(Host(str(host_trees("rt-isolated")))), config=config).labels
    assert labels[f"{NFD}/cpu-cpuid.RTSCHED"] == "true" and labels["realtime"] == "true"
    assert labels[f"{NFD}/numa"] == "false" and labels["topology.kubernetes.io/numa-nodes"] == "1"
    assert f"{NFD}/cpu-cpuid.AVX512F" not in labels  # NFD publishes that one itself
