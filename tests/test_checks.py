"""Checks and workload readiness as pure functions of hand-built inventories.

Each readiness test starts from a host that meets the workload's requirements and removes one
requirement at a time, so every rule of CONTRACT §4's table is shown to matter.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from nodeagent.checks import readiness_check, run_checks
from nodeagent.inventory import Inventory, IommuGroupMember, KubeletInfo
from nodeagent.workloads import readiness
from tests.support.factories import make_cpu, make_gpu, make_inventory, pool, with_ksm


def by_id(inv: Inventory) -> dict[str, str]:
    return {r.id: r.status for r in run_checks(inv)}


def ready(inv: Inventory, workload: str) -> bool:
    return readiness(inv)[workload].ready


HUGE_1G = {"2Mi": pool("2Mi", 0), "1Gi": pool("1Gi", 64)}  # the database recipe's 64Gi
HUGE_2M = {"2Mi": pool("2Mi", 65536), "1Gi": pool("1Gi", 0)}  # the AI training recipe's 128Gi

STATIC = KubeletInfo(config_present=True, config_path="/var/lib/kubelet/config.yaml", cpu_manager_policy="static",
                     reserved_system_cpus=[0, 1], topology_manager_policy="single-numa-node",
                     topology_manager_scope="pod", memory_manager_policy="Static", running=None, started_at=None)


def test_general_needs_only_kvm() -> None:
    inv = make_inventory()
    assert ready(inv, "general")
    gone = replace(inv, kvm=replace(inv.kvm, available=False, device=None, accessible=False))
    assert not ready(gone, "general")
    assert readiness(gone)["general"].reasons == ["KVM is not available (/dev/kvm is missing)"]
    # Every other workload stands on general.
    assert not any(r.ready for r in readiness(gone).values())


def test_high_density_needs_ksm_running() -> None:
    inv = make_inventory()
    assert not ready(inv, "high-density")
    assert ready(with_ksm(inv, 1), "high-density")
    assert not ready(with_ksm(inv, 2), "high-density")  # run=2 is "stop and unmerge"


def test_database_needs_64_1gi_pages_and_ksm_off() -> None:
    inv = make_inventory(hugepages=HUGE_1G)
    assert ready(inv, "database")
    assert not ready(with_ksm(inv, 1), "database")
    assert not ready(make_inventory(hugepages=HUGE_2M), "database")
    # Sized: 63 pages are one short of the recipe's 64Gi, and the reason says so.
    short = make_inventory(hugepages={"1Gi": pool("1Gi", 63)})
    assert readiness(short)["database"].reasons == ["needs 64 1Gi hugepages configured, has 63"]


def test_hpc_needs_1gi_and_avx512f() -> None:
    cpu = make_cpu(flags=["vmx", "avx512f", "pdpe1gb"])
    assert ready(make_inventory(cpu=cpu, hugepages=HUGE_1G), "hpc")
    assert not ready(make_inventory(hugepages=HUGE_1G), "hpc")
    assert not ready(make_inventory(cpu=cpu, hugepages=HUGE_2M), "hpc")
    assert readiness(make_inventory(hugepages=HUGE_1G))["hpc"].reasons == ["CPU lacks avx512f"]


def _ai_inventory(gpus: int = 2) -> Inventory:
    base = make_inventory(hugepages=HUGE_2M,
                          gpus=[make_gpu(f"0000:{0x17 + i:02x}:00.0", iommu_group=27 + i) for i in range(gpus)])
    return replace(base, iommu=replace(base.iommu, enabled=True, groups=40))


def test_ai_training_needs_iommu_two_ready_gpus_and_128gi_of_2mi_pages() -> None:
    base = _ai_inventory()
    assert ready(base, "ai-training")
    assert not ready(replace(base, iommu=replace(base.iommu, enabled=False, groups=0)), "ai-training")
    # One GPU (or one of two not on vfio) is short of the recipe's two.
    assert readiness(_ai_inventory(1))["ai-training"].reasons == ["needs 2 passthrough-ready GPUs, has 1"]
    one_bound = replace(base, gpus=[base.gpus[0], make_gpu(driver="nvidia", passthrough_ready=False)])
    assert readiness(one_bound)["ai-training"].reasons == ["needs 2 passthrough-ready GPUs, has 1"]
    no_pages = replace(base, memory=replace(base.memory, hugepages={"2Mi": pool("2Mi", 0)}))
    assert readiness(no_pages)["ai-training"].reasons == ["needs 65536 2Mi hugepages (128Gi) configured, has 0"]
    # The recipe's pages are 2Mi: 1Gi pages, however many, do not stand in for them.
    with_1g = replace(base, memory=replace(base.memory, hugepages={"2Mi": pool("2Mi", 0), "1Gi": pool("1Gi", 256)}))
    assert not ready(with_1g, "ai-training")


def _rt_inventory(**cpu_changes: object) -> Inventory:
    isolated = list(range(2, 8))
    cpu = make_cpu(
        logical_cpus=8, online=list(range(8)), isolated=isolated, nohz_full=isolated,
        cmdline_isolcpus=isolated, cmdline_nohz_full=isolated, cmdline_rcu_nocbs=isolated,
        governors={"performance": list(range(8))}, governor="performance",
        flags=["vmx", "tsc_deadline_timer", "pdpe1gb"],
    )
    cpu = replace(cpu, **cpu_changes)
    inv = make_inventory(cpu=cpu, hugepages=HUGE_1G, kubelet=STATIC)
    return replace(inv, kernel=replace(inv.kernel, realtime=True, preempt_model="PREEMPT_RT", sched_rt_runtime_us=-1))


def test_realtime_ready_when_every_requirement_holds() -> None:
    assert readiness(_rt_inventory())["realtime"].reasons == []


@pytest.mark.parametrize(("change", "reason"), [
    ({"isolated": []}, "no isolated CPUs"),
    ({"nohz_full": [2, 3]}, "nohz_full"),
    ({"cmdline_rcu_nocbs": None}, "rcu_nocbs"),
    ({"governors": {"performance": [0, 1], "powersave": list(range(2, 8))}}, "governor"),
    ({"flags": ["vmx", "pdpe1gb"]}, "tsc_deadline_timer"),
])
def test_realtime_not_ready_names_the_missing_requirement(change: dict[str, object], reason: str) -> None:
    result = readiness(_rt_inventory(**change))["realtime"]
    assert not result.ready
    assert any(reason in r for r in result.reasons), result.reasons


def test_realtime_without_cpufreq_ignores_the_governor() -> None:
    assert ready(_rt_inventory(governors={}, governor=None), "realtime")


def test_realtime_needs_an_rt_kernel_1gi_pages_and_unthrottled_rt_tasks() -> None:
    inv = _rt_inventory()
    assert not ready(replace(inv, kernel=replace(inv.kernel, realtime=False)), "realtime")
    assert not ready(replace(inv, memory=replace(inv.memory, hugepages=HUGE_2M)), "realtime")
    throttled = replace(inv, kernel=replace(inv.kernel, sched_rt_runtime_us=950000))
    assert readiness(throttled)["realtime"].reasons == [
        "kernel.sched_rt_runtime_us is 950000: RT tasks are throttled "
        "(needs -1, profile spec.kernel.realtimeScheduling)"]


# --- the kubelet's managers ----------------------------------------------------------------------

DEDICATED = ("database", "hpc", "realtime")


@pytest.mark.parametrize(("change", "blocked", "reason"), [
    ({"cpu_manager_policy": "none"}, {"database", "hpc", "realtime"},
     "kubelet CPU manager is none: dedicated CPUs impossible (needs static)"),
    ({"cpu_manager_policy": None}, {"database", "hpc", "realtime"},  # absent: the kubelet's default, none
     "kubelet CPU manager is none: dedicated CPUs impossible (needs static)"),
    ({"topology_manager_policy": "best-effort"}, {"hpc", "realtime"},
     "kubelet topology manager is best-effort: CPUs, memory and devices not aligned on a NUMA node "
     "(needs single-numa-node or restricted)"),
    ({"memory_manager_policy": None}, {"hpc", "realtime"},
     "kubelet memory manager is None: guaranteed memory and hugepages not NUMA-local (needs Static)"),
])
def test_dedicated_cpu_classes_need_the_kubelet_managers(change: dict[str, object], blocked: set[str],
                                                         reason: str) -> None:
    cpu = make_cpu(flags=["vmx", "avx512f", "pdpe1gb", "tsc_deadline_timer"])
    host = replace(_rt_inventory(), cpu=replace(_rt_inventory().cpu, flags=cpu.flags))
    assert {w for w in DEDICATED if ready(host, w)} == set(DEDICATED)
    mixed = replace(host, kubelet=replace(STATIC, **change))
    result = readiness(mixed)
    assert {w for w in DEDICATED if not result[w].ready} == blocked
    for workload in blocked:
        assert result[workload].reasons == [reason]
    assert result["general"].ready and not result["general"].notes


def test_without_a_kubelet_configuration_the_managers_are_a_note_not_a_block() -> None:
    host = replace(_rt_inventory(), kubelet=replace(STATIC, config_present=False, config_path=None,
                                                   cpu_manager_policy=None, topology_manager_policy=None,
                                                   memory_manager_policy=None))
    result = readiness(host)["realtime"]
    assert result.ready and result.reasons == []
    assert result.notes == ["kubelet managers unknown (no kubelet configuration found): not judged; the class "
                            "needs CPU manager static, topology manager single-numa-node or restricted, "
                            "memory manager Static"]
    unreadable = replace(host, kubelet=replace(STATIC, config_readable=False, cpu_manager_policy=None))
    assert readiness(unreadable)["realtime"].ready
    assert "not readable by this user" in readiness(unreadable)["realtime"].notes[0]
    check = readiness_check(result)
    assert check.status == "PASS" and "kubelet managers unknown" in check.reason


def test_kubelet_manager_check_lines() -> None:
    def lines(kubelet: KubeletInfo) -> dict[str, tuple[str, str]]:
        return {r.id: (r.status, r.reason) for r in run_checks(make_inventory(kubelet=kubelet))
                if r.id.startswith("kubelet-")}

    assert lines(STATIC) == {
        "kubelet-cpu-manager": ("PASS", "static, reservedSystemCPUs 0-1"),
        "kubelet-topology-manager": ("PASS", "single-numa-node, scope pod"),
        "kubelet-memory-manager": ("PASS", "Static"),
    }
    defaults = replace(STATIC, cpu_manager_policy=None, reserved_system_cpus=None, topology_manager_policy=None,
                       topology_manager_scope=None, memory_manager_policy=None)
    warned = lines(defaults)
    assert {status for status, _ in warned.values()} == {"WARN"}
    assert warned["kubelet-cpu-manager"][1].startswith("none (the kubelet's default): ")
    assert warned["kubelet-memory-manager"][1].startswith("None (the kubelet's default): ")
    fixes = {r.id: r.fix for r in run_checks(make_inventory(kubelet=defaults)) if r.id.startswith("kubelet-")}
    assert "cpuManagerPolicy: static" in (fixes["kubelet-cpu-manager"] or "")
    assert "cpu_manager_state" in (fixes["kubelet-cpu-manager"] or "")
    assert "memory_manager_state" in (fixes["kubelet-memory-manager"] or "")
    mixed = lines(replace(STATIC, topology_manager_policy="none"))
    assert [mixed[k][0] for k in sorted(mixed)] == ["PASS", "PASS", "WARN"]  # cpu, memory, topology
    absent = lines(make_inventory().kubelet)
    assert absent == {k: ("SKIP", "no kubelet configuration found") for k in warned}


def test_hardware_virtualization_three_ways() -> None:
    inv = make_inventory()
    assert by_id(inv)["hardware-virtualization"] == "PASS"
    no_flag = make_inventory(cpu=make_cpu(flags=[], virtualization=None))
    assert by_id(no_flag)["hardware-virtualization"] == "FAIL"
    pvm = replace(no_flag, kvm=replace(no_flag.kvm, api_version=12, device="char"))
    assert by_id(pvm)["hardware-virtualization"] == "WARN"


def test_missing_kvm_fails_and_exit_relevant_checks_follow() -> None:
    inv = make_inventory()
    inv = replace(inv, kvm=replace(inv.kvm, available=False, device=None, accessible=False))
    statuses = by_id(inv)
    assert statuses["kvm-device"] == "FAIL"
    assert "kvm-accessible" not in statuses


def test_isolation_consistency() -> None:
    good = _rt_inventory()
    good = replace(good, kubelet=replace(good.kubelet, reserved_system_cpus=[0, 1]))
    assert by_id(good)["cpu-isolation"] == "PASS"
    overlap = replace(good, kubelet=replace(good.kubelet, reserved_system_cpus=[0, 1, 2]))
    assert by_id(overlap)["cpu-isolation"] == "FAIL"
    gap = replace(good, kubelet=replace(good.kubelet, reserved_system_cpus=[0]))
    assert by_id(gap)["cpu-isolation"] == "WARN"
    assert by_id(_rt_inventory(cmdline_rcu_nocbs=[2, 3]))["cpu-isolation"] == "WARN"
    assert by_id(make_inventory())["cpu-isolation"] == "SKIP"


def test_numa_balancing_warns_only_with_isolated_cpus() -> None:
    rt = _rt_inventory()
    assert by_id(replace(rt, kernel=replace(rt.kernel, numa_balancing=1)))["numa-balancing"] == "WARN"
    plain = make_inventory()
    assert by_id(replace(plain, kernel=replace(plain.kernel, numa_balancing=1)))["numa-balancing"] == "PASS"


def test_swap_warns() -> None:
    inv = make_inventory()
    assert by_id(inv)["swap"] == "PASS"
    assert by_id(replace(inv, memory=replace(inv.memory, swap_total_bytes=2**31)))["swap"] == "WARN"


def test_gpu_viability() -> None:
    base = make_inventory()
    base = replace(base, iommu=replace(base.iommu, enabled=True, groups=10))
    audio = IommuGroupMember("0000:17:00.1", "10de", "22ba", "0x040300", "audio", "snd_hda_intel")
    usb = IommuGroupMember("0000:18:00.0", "1022", "15b6", "0x0c0330", "usb", "xhci_hcd")
    host_gpu = make_gpu(driver="nvidia", passthrough_ready=False, group_members=[audio])
    stranger = make_gpu("0000:19:00.0", driver="amdgpu", passthrough_ready=False, group_members=[usb])
    vga = make_gpu("0000:03:00.0", driver="ast", passthrough_ready=False, boot_vga=True)
    results = {r.id: r for r in run_checks(replace(base, gpus=[make_gpu("0000:a0:00.0"), host_gpu, stranger, vga]))}
    assert results["gpu-passthrough-0000:a0:00.0"].status == "PASS"
    # On a host driver but movable with its own audio function: viable, and said so.
    assert results["gpu-passthrough-0000:17:00.0"].status == "PASS"
    assert "viable" in results["gpu-passthrough-0000:17:00.0"].reason
    assert results["gpu-passthrough-0000:19:00.0"].status == "WARN"
    assert "0000:18:00.0" in results["gpu-passthrough-0000:19:00.0"].reason
    assert results["gpu-passthrough-0000:03:00.0"].status == "WARN"
    assert "boot VGA" in results["gpu-passthrough-0000:03:00.0"].reason


def test_degraded_link_and_uncorrectable_aer_warn() -> None:
    from nodeagent.inventory import PcieLink

    gpu = make_gpu(link=PcieLink(16.0, 8, 32.0, 16), aer={"correctable": 3, "nonfatal": 1, "fatal": 0})
    statuses = by_id(make_inventory(gpus=[gpu]))
    assert statuses["gpu-link-0000:17:00.0"] == "WARN"
    assert statuses["gpu-aer-0000:17:00.0"] == "WARN"
    assert "gpu-link-0000:17:00.0" not in by_id(make_inventory(gpus=[make_gpu()]))


def test_hugepages_exhausted_warns() -> None:
    assert by_id(make_inventory(hugepages={"1Gi": pool("1Gi", 4, 0)}))["hugepages-1Gi"] == "WARN"
    assert by_id(make_inventory(hugepages={"1Gi": pool("1Gi", 4, 2)}))["hugepages-1Gi"] == "PASS"


def test_host_file_warnings_surface_as_a_check() -> None:
    assert by_id(make_inventory(warnings=["/proc/x: garbled"]))["host-files"] == "WARN"


def test_readiness_check_fails_when_not_ready() -> None:
    result = readiness_check(readiness(make_inventory())["realtime"])
    assert result.status == "FAIL"
    assert "PREEMPT_RT" in result.reason
    assert readiness_check(readiness(make_inventory())["general"]).status == "PASS"


def test_every_result_has_a_known_status_and_a_fix_unless_it_passed() -> None:
    for result in run_checks(make_inventory(cpu=make_cpu(flags=[], virtualization=None))):
        assert result.status in ("PASS", "WARN", "FAIL", "SKIP")
        if result.status in ("WARN", "FAIL"):
            assert result.fix, result.id


def test_root_only_kvm_is_not_missing_hardware_virtualization() -> None:
    """No vmx/svm flag and a /dev/kvm this user may not open: cannot tell, so WARN, never FAIL."""
    base = make_inventory(cpu=make_cpu(flags=[], virtualization=None))
    unprivileged = replace(base, kvm=replace(base.kvm, accessible=False), privileged=False,
                           unreadable=["/dev/kvm"])
    results = {r.id: r for r in run_checks(unprivileged)}
    assert results["hardware-virtualization"].status == "WARN"
    assert "not readable by this user" in results["hardware-virtualization"].reason
    assert results["kvm-accessible"].status == "WARN" and results["kvm-api"].status == "SKIP"
    assert results["host-files-access"].status == "WARN"
    assert readiness(unprivileged)["general"].ready
    as_root = replace(unprivileged, privileged=True, unreadable=[])
    assert {r.id: r.status for r in run_checks(as_root)}["kvm-accessible"] == "FAIL"
    missing = replace(base, kvm=replace(base.kvm, available=False, device=None, accessible=False))
    assert {r.id: r.status for r in run_checks(missing)}["hardware-virtualization"] == "FAIL"


def test_flagless_architectures_judge_by_dev_kvm() -> None:
    arm = make_inventory(cpu=make_cpu(flags=["fp", "asimd"], virtualization=None, architecture="aarch64"))
    assert {r.id: r.status for r in run_checks(arm)}["hardware-virtualization"] == "PASS"
    no_el2 = replace(arm, kvm=replace(arm.kvm, available=False, device=None, accessible=False))
    result = next(r for r in run_checks(no_el2) if r.id == "hardware-virtualization")
    assert result.status == "FAIL" and "EL2" in (result.fix or "") and "VT-x" not in (result.fix or "")


def test_nested_check_without_a_kvm_module_says_so() -> None:
    from nodeagent.checks import check_nested

    no_module = make_inventory()
    no_module = replace(no_module, kvm=replace(no_module.kvm, module=None, nested=None))
    result, = check_nested(no_module)
    assert result.reason == "no KVM module is loaded, so there is no 'nested' parameter to read"
    old_module = replace(no_module, kvm=replace(no_module.kvm, module="kvm_amd"))
    assert check_nested(old_module)[0].reason == "module kvm_amd has no 'nested' parameter"


def test_hugepage_and_iommu_advice_follow_the_architecture() -> None:
    s390 = make_inventory(cpu=make_cpu(flags=["sie"], virtualization="sie", architecture="s390x"),
                          hugepages={"1Mi": replace(pool("2Mi", 0), size="1Mi", size_kb=1024)})
    results = {r.id: r for r in run_checks(s390)}
    assert results["hugepages-1gi-support"].status == "WARN"
    assert "pdpe1gb" not in results["hugepages-1gi-support"].reason and "1Mi" in results["hugepages-1gi-support"].reason
    assert "intel_iommu" not in (results["iommu-kernel"].fix or "")
    arm = make_inventory(cpu=make_cpu(flags=["fp"], virtualization=None, architecture="aarch64"),
                         hugepages={"2Mi": pool("2Mi", 0), "1Gi": pool("1Gi", 0)})
    assert {r.id: r.status for r in run_checks(arm)}["hugepages-1gi-support"] == "PASS"
