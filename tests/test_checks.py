"""Checks and workload readiness as pure functions of hand-built inventories.

Each readiness test starts from a host that meets the workload's requirements and removes one
requirement at a time, so every rule of CONTRACT §4's table is shown to matter.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from nodeagent.checks import readiness, readiness_check, run_checks
from nodeagent.inventory import Inventory, IommuGroupMember
from tests.support.factories import make_cpu, make_gpu, make_inventory, pool, with_ksm


def by_id(inv: Inventory) -> dict[str, str]:
    return {r.id: r.status for r in run_checks(inv)}


def ready(inv: Inventory, workload: str) -> bool:
    return readiness(inv)[workload].ready


HUGE_1G = {"2Mi": pool("2Mi", 0), "1Gi": pool("1Gi", 16)}
HUGE_2M = {"2Mi": pool("2Mi", 4096), "1Gi": pool("1Gi", 0)}


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


def test_database_needs_1gi_pages_and_ksm_off() -> None:
    inv = make_inventory(hugepages=HUGE_1G)
    assert ready(inv, "database")
    assert not ready(with_ksm(inv, 1), "database")
    assert not ready(make_inventory(hugepages=HUGE_2M), "database")


def test_hpc_needs_1gi_and_avx512f() -> None:
    cpu = make_cpu(flags=["vmx", "avx512f", "pdpe1gb"])
    assert ready(make_inventory(cpu=cpu, hugepages=HUGE_1G), "hpc")
    assert not ready(make_inventory(hugepages=HUGE_1G), "hpc")
    assert not ready(make_inventory(cpu=cpu, hugepages=HUGE_2M), "hpc")


def test_ai_training_needs_iommu_a_ready_gpu_and_hugepages() -> None:
    base = make_inventory(hugepages=HUGE_2M, gpus=[make_gpu()])
    base = replace(base, iommu=replace(base.iommu, enabled=True, groups=40))
    assert ready(base, "ai-training")
    assert not ready(replace(base, iommu=replace(base.iommu, enabled=False, groups=0)), "ai-training")
    assert not ready(replace(base, gpus=[make_gpu(driver="nvidia", passthrough_ready=False)]), "ai-training")
    no_pages = replace(base, memory=replace(base.memory, hugepages={"2Mi": pool("2Mi", 0)}))
    assert not ready(no_pages, "ai-training")
    with_1g = replace(base, memory=replace(base.memory, hugepages=HUGE_1G))
    assert ready(with_1g, "ai-training")


def _rt_inventory(**cpu_changes: object) -> Inventory:
    isolated = list(range(2, 8))
    cpu = make_cpu(
        logical_cpus=8, online=list(range(8)), isolated=isolated, nohz_full=isolated,
        cmdline_isolcpus=isolated, cmdline_nohz_full=isolated, cmdline_rcu_nocbs=isolated,
        governors={"performance": list(range(8))}, governor="performance",
        flags=["vmx", "tsc_deadline_timer", "pdpe1gb"],
    )
    cpu = replace(cpu, **cpu_changes)
    inv = make_inventory(cpu=cpu, hugepages=HUGE_1G)
    return replace(inv, kernel=replace(inv.kernel, realtime=True, preempt_model="PREEMPT_RT"))


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


def test_realtime_needs_an_rt_kernel_and_1gi_pages() -> None:
    inv = _rt_inventory()
    assert not ready(replace(inv, kernel=replace(inv.kernel, realtime=False)), "realtime")
    assert not ready(replace(inv, memory=replace(inv.memory, hugepages=HUGE_2M)), "realtime")


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
