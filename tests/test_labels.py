"""labels.py: Inventory (+ profile) → the labels and taints of CONTRACT §4 (pure; no host, no cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from nodeagent.kubenames import label_key_error, label_value_error
from nodeagent.labels import (
    CPUID_FLAGS,
    LabelConfig,
    LabelError,
    NodeTaint,
    compute_labels,
    is_computed_key,
)
from nodeagent.workloads import Readiness
from tests.support.factories import make_cpu, make_gpu, make_inventory, pool

NFD = "feature.node.kubernetes.io"


@dataclass(frozen=True)
class Sel:
    vendor: str | None = None
    device: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class T:
    key: str
    value: str | None
    effect: str


@dataclass(frozen=True)
class Profile:
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[T] = field(default_factory=list)
    gpu_passthrough: list[Sel] = field(default_factory=list)


def ready(*workloads: str) -> dict[str, Readiness]:
    all_ = ("general", "high-density", "database", "hpc", "ai-training", "realtime")
    return {w: Readiness(w, w in workloads, [] if w in workloads else ["not this one"]) for w in all_}


# --- the whole set, for the factory's plain host ------------------------------------------------


def test_plain_kvm_host_exact_set() -> None:
    """make_inventory(): 1 NUMA node, 4 CPUs no SMT, vmx, KVM (nested), KSM off, no pages, no cpufreq.

    Expected from CONTRACT §4 by hand: only VMX among the named cpuid flags, one NUMA node, general
    is the only workload ready (KVM is there; nothing else is configured).
    """
    labels = compute_labels(make_inventory()).labels
    assert labels == {
        f"{NFD}/cpu-cpuid.VMX": "true",
        f"{NFD}/cpu-hardware_multithreading": "false",
        f"{NFD}/numa": "false",  # no memory-numa: NFD never writes it false, nor does nodeagent
        "topology.kubernetes.io/numa-nodes": "1",
        "nodeagent.io/numa": "false",
        "nodeagent.io/numa-nodes": "1",
        "nodeagent.io/kvm": "true",
        "nodeagent.io/kvm-nested": "true",
        "nodeagent.io/iommu": "false",
        "nodeagent.io/rt-kernel": "false",
        "nodeagent.io/ksm": "false",
        "nodeagent.io/hugepages-2Mi": "false",
        "nodeagent.io/hugepages-1Gi": "false",
        "nodeagent.io/isolated-cpus": "0",
        "nodeagent.io/gpu-passthrough": "false",
        "nodeagent.io/gpu-passthrough-count": "0",
        "nodeagent.io/vgpu": "false",  # no vGPU-capable GPU: the counts are left off
        "nodeagent.io/ready-general": "true",
        "nodeagent.io/ready-high-density": "false",
        "nodeagent.io/ready-database": "false",
        "nodeagent.io/ready-hpc": "false",
        "nodeagent.io/ready-ai-training": "false",
        "nodeagent.io/ready-vgpu": "false",  # no vGPU instance
        "nodeagent.io/ready-realtime": "false",
        "nodeagent.io/reboot-required": "false",
        "nodeagent.io/kubelet-restart-required": "false",
    }


# --- NFD-compatible cpuid names ---------------------------------------------------------------------


@pytest.mark.parametrize(("proc_flag", "nfd_name"), [
    ("avx2", "AVX2"), ("avx512f", "AVX512F"), ("avx512dq", "AVX512DQ"), ("avx512bw", "AVX512BW"),
    ("avx512cd", "AVX512CD"), ("avx512vl", "AVX512VL"), ("avx512_bf16", "AVX512BF16"),
    ("avx512_vnni", "AVX512VNNI"), ("amx_bf16", "AMXBF16"), ("amx_int8", "AMXINT8"), ("amx_tile", "AMXTILE"),
    ("fma", "FMA3"), ("sha_ni", "SHA"), ("aes", "AESNI"), ("vmx", "VMX"), ("svm", "SVM"),
])
def test_cpuid_flag_names_follow_nfd(proc_flag: str, nfd_name: str) -> None:
    """/proc/cpuinfo spelling → the klauspost/cpuid name NFD publishes."""
    labels = compute_labels(make_inventory(cpu=make_cpu(flags=[proc_flag])), readiness=ready()).labels
    cpuid = {k for k in labels if k.startswith(f"{NFD}/cpu-cpuid.")}
    assert cpuid == {f"{NFD}/cpu-cpuid.{nfd_name}"}
    assert labels[f"{NFD}/cpu-cpuid.{nfd_name}"] == "true"


def test_only_the_contracts_flags_and_only_present_ones() -> None:
    flags = ["sse4_2", "avx512ifma", "avx512_fp16", "popcnt", "avx", "x2apic", "pdpe1gb"]
    labels = compute_labels(make_inventory(cpu=make_cpu(flags=flags)), readiness=ready()).labels
    assert not [k for k in labels if k.startswith(f"{NFD}/cpu-cpuid.")]
    assert len(CPUID_FLAGS) == 16


def test_rtsched_only_on_preempt_rt() -> None:
    inv = make_inventory()
    rt = replace(inv, kernel=replace(inv.kernel, realtime=True, preempt_model="PREEMPT_RT"))
    assert f"{NFD}/cpu-cpuid.RTSCHED" not in compute_labels(inv, readiness=ready()).labels
    labels = compute_labels(rt, readiness=ready()).labels
    assert labels[f"{NFD}/cpu-cpuid.RTSCHED"] == "true"
    assert labels["nodeagent.io/rt-kernel"] == "true"


def test_hardware_multithreading_as_nfd_reads_thread_siblings() -> None:
    smt = make_cpu(threads_per_core=2, thread_siblings=[[0, 2], [1, 3]])
    smt_off = make_cpu(threads_per_core=2, thread_siblings=[[0], [1]], smt_active=False)  # nosmt
    assert compute_labels(make_inventory(cpu=smt), readiness=ready()).labels[
        f"{NFD}/cpu-hardware_multithreading"] == "true"
    assert compute_labels(make_inventory(cpu=smt_off), readiness=ready()).labels[
        f"{NFD}/cpu-hardware_multithreading"] == "false"


def test_numa_labels_count_nodes() -> None:
    inv = make_inventory()
    two = replace(inv, numa=[inv.numa[0], replace(inv.numa[0], id=1)])
    labels = compute_labels(two, readiness=ready()).labels
    assert labels[f"{NFD}/numa"] == labels[f"{NFD}/memory-numa"] == "true"
    assert labels["topology.kubernetes.io/numa-nodes"] == "2"


# --- configuration ----------------------------------------------------------------------------------


def test_nfd_switch_drops_exactly_what_nfd_publishes_itself() -> None:
    inv = make_inventory(cpu=make_cpu(flags=["avx512f", "vmx"]))
    inv = replace(inv, kernel=replace(inv.kernel, realtime=True))
    with_nfd = compute_labels(inv, config=LabelConfig(nfd_compatible=True), readiness=ready()).labels
    without = compute_labels(inv, config=LabelConfig(nfd_compatible=False), readiness=ready()).labels
    assert set(with_nfd) - set(without) == {
        f"{NFD}/cpu-cpuid.AVX512F", f"{NFD}/cpu-cpuid.VMX", f"{NFD}/cpu-hardware_multithreading"}
    assert f"{NFD}/memory-numa" not in with_nfd  # one NUMA node: absent, never "false"
    # NFD does not publish these, so nodeagent keeps them for the VM recipes' selectors:
    assert {f"{NFD}/numa", f"{NFD}/cpu-cpuid.RTSCHED", "topology.kubernetes.io/numa-nodes"} <= set(without)


def test_prefix_changes_own_labels_and_annotations() -> None:
    config = LabelConfig(prefix="virt.example.com")
    result = compute_labels(make_inventory(), config=config, readiness=ready("general"))
    own = {k for k in result.labels if k.startswith("virt.example.com/")}
    assert "virt.example.com/ready-general" in own and "virt.example.com/kvm" in own
    assert not [k for k in result.labels if k.startswith("nodeagent.io/")]
    annotations = result.owned_annotations(config)
    assert set(annotations) == {"virt.example.com/owned-labels", "virt.example.com/owned-taints"}
    assert annotations["virt.example.com/owned-labels"].split(",") == sorted(result.labels)


@pytest.mark.parametrize("prefix", ["", "Bad.Prefix", "-x.io", "a/b", "x" * 254])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(LabelError, match="prefix"):
        LabelConfig(prefix=prefix)


# --- readiness-driven labels --------------------------------------------------------------------


def test_ready_labels_come_from_checks_readiness() -> None:
    labels = compute_labels(make_inventory(), readiness=ready("hpc", "database")).labels
    assert {k: v for k, v in labels.items() if "/ready-" in k} == {
        "nodeagent.io/ready-general": "false", "nodeagent.io/ready-high-density": "false",
        "nodeagent.io/ready-database": "true", "nodeagent.io/ready-hpc": "true",
        "nodeagent.io/ready-ai-training": "false", "nodeagent.io/ready-realtime": "false"}


def test_realtime_label_only_when_ready_realtime() -> None:
    assert compute_labels(make_inventory(), readiness=ready("realtime")).labels["realtime"] == "true"
    assert "realtime" not in compute_labels(make_inventory(), readiness=ready("general")).labels


def test_profile_cannot_force_realtime() -> None:
    result = compute_labels(make_inventory(), Profile(labels={"realtime": "true"}), readiness=ready())
    assert "realtime" not in result.labels
    assert any("realtime" in w for w in result.warnings)
    agreed = compute_labels(make_inventory(), Profile(labels={"realtime": "true"}), readiness=ready("realtime"))
    assert agreed.labels["realtime"] == "true" and not agreed.warnings


# --- GPUs ------------------------------------------------------------------------------------------


def test_gpu_passthrough_counts_ready_gpus_only() -> None:
    gpus = [make_gpu("0000:17:00.0"), make_gpu("0000:18:00.0"),
            make_gpu("0000:19:00.0", driver="nvidia", passthrough_ready=False)]
    labels = compute_labels(make_inventory(gpus=gpus), readiness=ready()).labels
    assert labels["nodeagent.io/gpu-passthrough"] == "true"
    assert labels["nodeagent.io/gpu-passthrough-count"] == "2"


@pytest.mark.parametrize(("selector", "expected"), [
    (Sel(vendor="10de"), True),
    (Sel(vendor="0x10DE", device="2330"), True),
    (Sel(device="2330"), True),  # no vendor: this host's GPU with that device id is NVIDIA
    (Sel(address="0000:17:00.0"), True),
    (Sel(address="0000:83:00.0"), False),  # the Radeon
    (Sel(vendor="1002"), False),
    (Sel(address="0000:99:00.0"), False),  # no such device here: nothing says NVIDIA
])
def test_nvidia_workload_config_when_profile_passes_nvidia_through(selector: Sel, expected: bool) -> None:
    gpus = [make_gpu("0000:17:00.0"),
            make_gpu("0000:83:00.0", vendor_id="1002", device_id="744c", name="Navi 31", passthrough_ready=False)]
    labels = compute_labels(make_inventory(gpus=gpus), Profile(gpu_passthrough=[selector]), readiness=ready()).labels
    assert (labels.get("nvidia.com/gpu.workload.config") == "vm-passthrough") is expected
    if not expected:
        assert "nvidia.com/gpu.workload.config" not in labels


def test_no_profile_no_nvidia_workload_label() -> None:
    labels = compute_labels(make_inventory(gpus=[make_gpu()]), readiness=ready()).labels
    assert "nvidia.com/gpu.workload.config" not in labels


# --- values ------------------------------------------------------------------------------------------


def test_governor_label_and_mixed() -> None:
    perf = compute_labels(make_inventory(cpu=make_cpu(governor="performance")), readiness=ready()).labels
    mixed = compute_labels(make_inventory(cpu=make_cpu(governor="mixed")), readiness=ready()).labels
    assert perf["nodeagent.io/cpu-governor"] == "performance"
    assert mixed["nodeagent.io/cpu-governor"] == "mixed"
    assert "nodeagent.io/cpu-governor" not in compute_labels(make_inventory(), readiness=ready()).labels


def test_a_discovered_value_that_is_no_label_value_is_dropped_with_a_warning() -> None:
    result = compute_labels(make_inventory(cpu=make_cpu(governor="weird governor!")), readiness=ready())
    assert "nodeagent.io/cpu-governor" not in result.labels
    assert any("cpu-governor" in w for w in result.warnings)


def test_hugepage_labels_and_counts() -> None:
    inv = make_inventory(hugepages={"2Mi": pool("2Mi", 512), "1Gi": pool("1Gi", 0)})
    inv = replace(inv, cpu=replace(inv.cpu, isolated=[2, 3]))
    labels = compute_labels(inv, readiness=ready()).labels
    assert labels["nodeagent.io/hugepages-2Mi"] == "true"
    assert labels["nodeagent.io/hugepages-1Gi"] == "false"
    assert labels["nodeagent.io/isolated-cpus"] == "2"


def test_pending_prep_labels() -> None:
    inv = make_inventory()
    inv = replace(inv, prep=replace(inv.prep, reboot_required=True, kubelet_restart_required=True))
    labels = compute_labels(inv, readiness=ready()).labels
    assert labels["nodeagent.io/reboot-required"] == labels["nodeagent.io/kubelet-restart-required"] == "true"


def test_ksm_label_is_ksm_running() -> None:
    inv = make_inventory()
    for run, expected in ((0, "false"), (1, "true"), (2, "false")):
        labels = compute_labels(replace(inv, ksm=replace(inv.ksm, run=run)), readiness=ready()).labels
        assert labels["nodeagent.io/ksm"] == expected


def test_every_value_is_a_valid_label_value() -> None:
    inv = make_inventory(gpus=[make_gpu()], cpu=make_cpu(flags=list(CPUID_FLAGS), governor="schedutil"))
    result = compute_labels(inv, Profile(labels={"pool": "gpu"}, gpu_passthrough=[Sel(vendor="10de")]),
                            readiness=ready("general", "realtime"))
    for key, value in result.labels.items():
        assert label_key_error(key) is None, key
        assert label_value_error(value) is None, (key, value)
    assert {k for k in result.labels if not is_computed_key(k, LabelConfig())} == {"pool"}  # the profile's own


# --- profile labels and taints -----------------------------------------------------------------------


def test_profile_labels_and_taints() -> None:
    profile = Profile(labels={"pool": "gpu", "example.com/tier": "gold"},
                      taints=[T("high-performance", "true", "NoSchedule"), T("dedicated", None, "NoExecute"),
                              T("high-performance", "false", "NoSchedule")])
    result = compute_labels(make_inventory(), profile, readiness=ready())
    assert result.labels["pool"] == "gpu" and result.labels["example.com/tier"] == "gold"
    assert result.taints == [NodeTaint("dedicated", "", "NoExecute"),
                             NodeTaint("high-performance", "false", "NoSchedule")]
    assert str(result.taints[1]) == "high-performance=false:NoSchedule"
    assert result.owned_annotations(LabelConfig())["nodeagent.io/owned-taints"] == \
        "dedicated:NoExecute,high-performance:NoSchedule"


def test_profile_cannot_override_computed_labels() -> None:
    profile = Profile(labels={"nodeagent.io/kvm": "false", "topology.kubernetes.io/numa-nodes": "8",
                              "nodeagent.io/cpu-governor": "performance",  # computed, absent here
                              f"{NFD}/cpu-cpuid.AMXBF16": "true",  # a flag this CPU lacks
                              "nvidia.com/gpu.workload.config": "vm-passthrough"})  # nothing passed through
    result = compute_labels(make_inventory(), profile, readiness=ready("general"))
    assert result.labels["nodeagent.io/kvm"] == "true"
    assert result.labels["topology.kubernetes.io/numa-nodes"] == "1"
    for key in ("nodeagent.io/cpu-governor", f"{NFD}/cpu-cpuid.AMXBF16", "nvidia.com/gpu.workload.config"):
        assert key not in result.labels
    assert len(result.warnings) == 5


def test_profile_may_use_the_own_prefix_for_keys_nodeagent_does_not_compute() -> None:
    profile = Profile(labels={"nodeagent.io/dedicated": "database", "nodeagent.io/overcommit": "true"})
    result = compute_labels(make_inventory(), profile, readiness=ready())
    assert result.labels["nodeagent.io/dedicated"] == "database"
    assert result.labels["nodeagent.io/overcommit"] == "true"
    assert not result.warnings


@pytest.mark.parametrize(("profile", "field_name"), [
    (Profile(labels={"bad key!": "x"}), "spec.labels"),
    (Profile(labels={"ok": "-starts-with-dash"}), "spec.labels['ok']"),
    (Profile(labels={"ok": "x" * 64}), "spec.labels['ok']"),
    (Profile(taints=[T("k", "v", "NoWay")]), "spec.taints[0].effect"),
    (Profile(taints=[T("k", "v v", "NoSchedule")]), "spec.taints[0].value"),
    (Profile(taints=[T("a/b/c", "v", "NoSchedule")]), "spec.taints[0].key"),
])
def test_invalid_profile_labels_name_the_field(profile: Profile, field_name: str) -> None:
    with pytest.raises(LabelError) as caught:
        compute_labels(make_inventory(), profile, readiness=ready())
    assert str(caught.value).startswith(field_name)


@pytest.mark.parametrize(("value", "ok"), [
    ("", True), ("true", True), ("a", True), ("vm-passthrough", True), ("A_b.c-9", True), ("x" * 63, True),
    ("x" * 64, False), ("-a", False), ("a-", False), ("a b", False), ("a/b", False), ("é", False), ("_a", False),
])
def test_label_value_rule(value: str, ok: bool) -> None:
    assert (label_value_error(value) is None) is ok


@pytest.mark.parametrize(("key", "ok"), [
    ("realtime", True), ("nodeagent.io/ready-hpc", True), ("feature.node.kubernetes.io/cpu-cpuid.AVX512F", True),
    ("nvidia.com/gpu.workload.config", True), ("Upper.io/x", False), ("a/b/c", False), ("/x", False),
    ("x/", False), ("n" * 64, False), ("example.com/" + "n" * 63, True),
])
def test_label_key_rule(key: str, ok: bool) -> None:
    assert (label_key_error(key) is None) is ok


def test_readiness_defaults_to_checks_readiness() -> None:
    """Without an explicit readiness, labels use nodeagent.checks.readiness (never a copy of its rules)."""
    from nodeagent.workloads import readiness

    inv = make_inventory()
    assert compute_labels(inv).labels == compute_labels(inv, readiness=readiness(inv)).labels


# --- NFD-owned and recipe-compatible sets -------------------------------------------------------------


def test_memory_numa_is_never_false_and_nfd_owned_keys_are_what_nfd_publishes() -> None:
    inv = make_inventory()
    two = replace(inv, numa=[inv.numa[0], replace(inv.numa[0], id=1)])
    assert f"{NFD}/memory-numa" not in compute_labels(inv, readiness=ready()).labels
    assert compute_labels(two, readiness=ready()).labels[f"{NFD}/memory-numa"] == "true"
    from nodeagent.labels import nfd_owned_keys

    owned = nfd_owned_keys()
    assert {f"{NFD}/cpu-cpuid.AVX512F", f"{NFD}/cpu-hardware_multithreading", f"{NFD}/memory-numa"} <= owned
    assert not owned & {f"{NFD}/numa", f"{NFD}/cpu-cpuid.RTSCHED", "topology.kubernetes.io/numa-nodes", "realtime"}


def test_recipe_compatible_set_switches_off_and_its_mirrors_stay() -> None:
    inv = make_inventory()
    inv = replace(inv, kernel=replace(inv.kernel, realtime=True))
    recipe = {f"{NFD}/numa", f"{NFD}/cpu-cpuid.RTSCHED", "topology.kubernetes.io/numa-nodes", "realtime"}
    on = compute_labels(inv, readiness=ready("realtime")).labels
    off = compute_labels(inv, config=LabelConfig(recipe_compatible=False), readiness=ready("realtime")).labels
    assert recipe <= set(on) and not recipe & set(off)
    mirrors = {"nodeagent.io/numa": "false", "nodeagent.io/numa-nodes": "1", "nodeagent.io/rt-sched": "true",
               "nodeagent.io/realtime": "true"}
    assert {k: on[k] for k in mirrors} == mirrors == {k: off[k] for k in mirrors}
    assert set(on) - set(off) == recipe


def test_nfd_modes() -> None:
    from nodeagent.labels import LabelError, label_config_for, nfd_detected, nfd_listed_labels

    assert label_config_for("auto") == LabelConfig(nfd_compatible=True, nfd_auto=True)
    assert label_config_for("on") == LabelConfig(nfd_compatible=True, nfd_auto=False)
    assert label_config_for("off").nfd_compatible is False
    with pytest.raises(LabelError, match="--nfd-labels: 'maybe' is not one of auto, on, off"):
        label_config_for("maybe")
    annotations = {"nfd.node.kubernetes.io/feature-labels": "cpu-cpuid.AVX2,example.com/thing"}
    assert nfd_listed_labels(annotations) == {f"{NFD}/cpu-cpuid.AVX2", "example.com/thing"}
    assert nfd_detected(annotations) and not nfd_detected({}) and nfd_detected({}, node_features=True)


def test_nvidia_workload_config_only_once_the_gpu_is_on_vfio() -> None:
    # Selected and present, but still on the host driver (prep has not bound it yet): no label.
    on_host = make_gpu("0000:17:00.0", driver="nvidia")
    profile = Profile(gpu_passthrough=[Sel(vendor="10de")])
    labels = compute_labels(make_inventory(gpus=[on_host]), profile, readiness=ready()).labels
    assert "nvidia.com/gpu.workload.config" not in labels
    bound = make_gpu("0000:17:00.0", driver="vfio-pci")
    labels = compute_labels(make_inventory(gpus=[bound]), profile, readiness=ready()).labels
    assert labels["nvidia.com/gpu.workload.config"] == "vm-passthrough"
