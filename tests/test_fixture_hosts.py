"""Every fixture host through discovery, checks and readiness.

Expected values are read off the specs in fixtures/specs (what the simulated hardware *is*),
not off the code under test: 224 CPUs because the spec says 2 sockets × 56 cores × 2 threads.
"""

from __future__ import annotations

import pytest

from nodeagent.checks import run_checks
from nodeagent.discover import discover
from nodeagent.inventory import Inventory
from nodeagent.workloads import readiness


@pytest.fixture(scope="module")
def inventories(host_trees) -> dict[str, Inventory]:
    from nodeagent.host import Host

    names = ["intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "desktop-no-iommu", "minimal"]
    return {name: discover(Host(str(host_trees(name)))) for name in names}


def statuses(inv: Inventory) -> dict[str, str]:
    return {r.id: r.status for r in run_checks(inv)}


def ready_set(inv: Inventory) -> set[str]:
    return {w for w, r in readiness(inv).items() if r.ready}


# --- intel-2s-8gpu: HGX H100 with a BMC VGA ---------------------------------------------------


def test_intel_cpu_topology(inventories) -> None:
    cpu = inventories["intel-2s-8gpu"].cpu
    assert (cpu.vendor, cpu.sockets, cpu.cores_per_socket, cpu.threads_per_core) == ("GenuineIntel", 2, 56, 2)
    assert cpu.logical_cpus == 224
    assert cpu.packages[0] == [*range(0, 56), *range(112, 168)]
    assert [0, 112] in cpu.thread_siblings
    assert cpu.virtualization == "vmx"
    assert cpu.governor == "performance"
    assert {"avx512f", "amx_tile", "avx512_bf16"} <= set(cpu.flags)


def test_intel_numa(inventories) -> None:
    numa = inventories["intel-2s-8gpu"].numa
    assert [n.id for n in numa] == [0, 1]
    assert [n.distances for n in numa] == [[10, 21], [21, 10]]
    assert numa[1].cpus == [*range(56, 112), *range(168, 224)]
    assert all(n.hugepages["1Gi"].total for n in numa)


def test_intel_gpus(inventories) -> None:
    inv = inventories["intel-2s-8gpu"]
    h100 = [g for g in inv.gpus if g.device_id == "2330"]
    assert len(h100) == 8
    assert {g.numa_node for g in h100[:4]} == {0} and {g.numa_node for g in h100[4:]} == {1}
    ready = sorted(g.address for g in inv.passthrough_gpus)
    assert ready == ["0000:18:00.0", "0000:19:00.0", "0000:4b:00.0", "0000:4c:00.0"]
    assert all(g.driver == "nvidia" and g.passthrough_blockers for g in h100 if g.address not in ready)
    assert all(g.name == "GH100 [H100 SXM5 80GB]" for g in h100)
    vga = next(g for g in inv.gpus if g.boot_vga)
    assert (vga.vendor_id, vga.device_id, vga.driver) == ("1a03", "2000", "ast")
    assert len(inv.nvswitches) == 4
    degraded = [g.address for g in inv.gpus if g.link.degraded]
    assert degraded == ["0000:cb:00.0"]
    noisy = next(g for g in inv.gpus if g.address == "0000:9b:00.0")
    assert noisy.aer["correctable"] == 9 + 3 + 2


def test_intel_nics_sriov(inventories) -> None:
    pf = next(n for n in inventories["intel-2s-8gpu"].nics if n.name == "ens3f0np0")
    assert (pf.driver, pf.numa_node, pf.sriov_totalvfs, pf.sriov_numvfs) == ("mlx5_core", 0, 16, 4)
    assert len(pf.vfs) == 4


def test_intel_platform(inventories) -> None:
    inv = inventories["intel-2s-8gpu"]
    assert inv.iommu.enabled and inv.iommu.firmware_table == "DMAR" and inv.iommu.passthrough_mode
    assert inv.kvm.available and inv.kvm.device == "file" and inv.kvm.api_version is None
    assert inv.kvm.module == "kvm_intel" and inv.kvm.nested is True
    assert inv.kubelet.cpu_manager_policy == "static"
    assert inv.kubelet.reserved_system_cpus == [0, 1, 112, 113]
    assert inv.warnings == []
    # under --root the KVM ioctl is not asked (a fixture's /dev/kvm is a file), and skipped says so
    assert "live-only source, not used under --root" in inv.skipped["kvm-ioctl"]


def test_intel_checks_and_readiness(inventories) -> None:
    inv = inventories["intel-2s-8gpu"]
    result = statuses(inv)
    assert result["hardware-virtualization"] == "PASS"
    assert result["iommu-kernel"] == "PASS"
    assert result["gpu-passthrough-0000:02:00.0"] == "WARN"  # the boot VGA
    assert result["gpu-link-0000:cb:00.0"] == "WARN"
    assert result["kvm-api"] == "SKIP"
    # mixed kubelet: static CPU manager, restricted topology manager, memory manager None
    assert (result["kubelet-cpu-manager"], result["kubelet-topology-manager"]) == ("PASS", "PASS")
    assert result["kubelet-memory-manager"] == "WARN"
    assert ready_set(inv) == {"general", "database"}
    ready = readiness(inv)
    assert ready["hpc"].reasons == ["kubelet memory manager is None: guaranteed memory and hugepages not "
                                    "NUMA-local (needs Static)"]
    assert ready["ai-training"].reasons == ["needs 65536 2Mi hugepages (128Gi) configured, has 0"]


# --- amd-nps4-consumer: NPS4 EPYC with consumer GPUs -------------------------------------------


def test_amd_numa_and_cpufreq(inventories) -> None:
    inv = inventories["amd-nps4-consumer"]
    assert len(inv.numa) == 4
    assert inv.numa[0].distances == [10, 12, 12, 12]
    assert inv.cpu.vendor == "AuthenticAMD" and inv.cpu.virtualization == "svm"
    assert inv.cpu.governor == "mixed"
    assert inv.cpu.governors["schedutil"] == [*range(32, 64), *range(96, 128)]
    assert [n.hugepages["2Mi"].total for n in inv.numa] == [4096, 4096, 0, 0]
    assert inv.memory.hugepages["2Mi"].total == 8192


def test_amd_gpu_groups(inventories) -> None:
    inv = inventories["amd-nps4-consumer"]
    rtx = next(g for g in inv.gpus if g.device_id == "2684")
    assert rtx.passthrough_ready
    assert [m.kind for m in rtx.group_members] == ["gpu", "audio"]
    radeon = next(g for g in inv.gpus if g.device_id == "744c")
    assert not radeon.passthrough_ready and radeon.boot_vga
    kinds = {m.kind for m in radeon.group_members}
    assert {"gpu", "audio", "usb", "bridge"} <= kinds
    assert any("0000:84:00.0" in b for b in radeon.passthrough_blockers)
    result = statuses(inv)
    assert result[f"gpu-passthrough-{rtx.address}"] == "PASS"
    assert result[f"gpu-passthrough-{radeon.address}"] == "WARN"


def test_amd_readiness(inventories) -> None:
    inv = inventories["amd-nps4-consumer"]
    assert inv.ksm.run == 1 and inv.ksm.pages_sharing == 318806
    assert inv.iommu.firmware_table == "IVRS"
    assert ready_set(inv) == {"general", "high-density"}
    assert readiness(inv)["ai-training"].reasons == ["needs 65536 2Mi hugepages (128Gi) configured, has 8192",
                                                     "needs 2 passthrough-ready GPUs, has 1"]
    # no kubelet yet: its managers are a note on the classes that need them, and SKIPped checks
    assert all(readiness(inv)[w].notes for w in ("database", "hpc", "realtime"))
    assert statuses(inv)["kubelet-cpu-manager"] == "SKIP"


# --- rt-isolated: PREEMPT_RT with isolated CPUs ------------------------------------------------


def test_rt_isolation(inventories) -> None:
    inv = inventories["rt-isolated"]
    isolated = [*range(2, 12), *range(14, 24)]
    assert inv.kernel.realtime and inv.kernel.preempt_model == "PREEMPT_RT"
    assert inv.cpu.isolated == isolated and inv.cpu.nohz_full == isolated
    assert inv.cpu.cmdline_isolcpus == isolated and inv.cpu.isolcpus_flags == ["managed_irq", "domain"]
    assert inv.cpu.cmdline_rcu_nocbs == isolated
    assert inv.kubelet.topology_manager_policy == "single-numa-node"
    assert inv.kubelet.memory_manager_policy == "Static"


def test_rt_checks_and_readiness(inventories) -> None:
    inv = inventories["rt-isolated"]
    result = statuses(inv)
    assert result["cpu-isolation"] == "PASS"
    assert result["numa-balancing"] == "PASS"
    assert readiness(inv)["realtime"].reasons == []
    assert {result[f"kubelet-{m}-manager"] for m in ("cpu", "topology", "memory")} == {"PASS"}
    assert ready_set(inv) == {"general", "hpc", "realtime"}
    assert readiness(inv)["database"].reasons == ["needs 64 1Gi hugepages configured, has 16"]


# --- desktop-no-iommu: no VT-x, no VT-d --------------------------------------------------------


def test_desktop_has_nothing_to_offer(inventories) -> None:
    inv = inventories["desktop-no-iommu"]
    assert not inv.kvm.available and inv.kvm.module is None
    assert not inv.iommu.enabled and inv.iommu.firmware_table is None
    assert inv.cpu.governor is None
    assert inv.memory.swap_total_bytes == 2097148 * 1024
    gpu = inv.gpus[0]
    assert gpu.boot_vga and gpu.iommu_group is None and not gpu.passthrough_ready
    result = statuses(inv)
    assert result["hardware-virtualization"] == "FAIL"
    assert result["kvm-device"] == "FAIL"
    assert result["swap"] == "WARN"
    assert result["iommu-firmware"] == "WARN"
    assert ready_set(inv) == set()


def test_minimal_host(inventories) -> None:
    inv = inventories["minimal"]
    assert inv.cpu.logical_cpus == 2 == len(inv.numa[0].cpus)
    assert inv.gpus == [] and not inv.iommu.enabled and not inv.kvm.available
    assert ready_set(inv) == set()


# --- garbled and missing files -----------------------------------------------------------------


def test_garbled_values_become_warnings_not_tracebacks(fresh_host_tree) -> None:
    from nodeagent.host import Host

    root = fresh_host_tree("rt-isolated")
    (root / "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages").write_text("lots\n")
    (root / "sys/devices/system/cpu/isolated").write_text("0-\n")
    inv = discover(Host(str(root)))
    assert inv.memory.hugepages["1Gi"].total is None
    assert inv.cpu.isolated == []
    assert any("nr_hugepages" in w for w in inv.warnings)
    assert any("/sys/devices/system/cpu/isolated" in w for w in inv.warnings)
    assert statuses(inv)["host-files"] == "WARN"


def test_vanished_subtrees_are_facts(fresh_host_tree) -> None:
    import shutil

    from nodeagent.host import Host

    root = fresh_host_tree("intel-2s-8gpu")
    for sub in ("sys/kernel/mm/ksm", "sys/kernel/iommu_groups", "sys/devices/system/node", "proc/cpuinfo"):
        target = root / sub
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    inv = discover(Host(str(root)))
    assert not inv.ksm.available and inv.ksm.run is None
    assert not inv.iommu.enabled
    assert len(inv.numa) == 1 and inv.numa[0].cpus == inv.cpu.online
    assert inv.cpu.vendor is None and inv.cpu.logical_cpus == 224
    assert not inv.passthrough_gpus
