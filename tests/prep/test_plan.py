"""Planning on synthetic hosts: each subsystem's changes, refusals and skips, and the empty plan."""

from __future__ import annotations

from pathlib import Path

from nodeagent.owned import dropin_args, pending
from nodeagent.prep.hugepages import boot_hugepage_args, supports_node_form
from nodeagent.prep.model import Effect
from tests.prep.helpers import applied, planned
from tests.support.trees import TreeSpec

N0_2M = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"


def _by_target(plan):  # type: ignore[no-untyped-def]
    return {c.target: c for c in plan.changes}


def test_pages_without_numa_node_are_spread_evenly(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(nodes=2))
    _, plan = planned(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 5}]}})
    changes = _by_target(plan)
    assert changes["node0 2Mi"].desired == 3
    assert changes["node1 2Mi"].desired == 2
    assert changes["node0 2Mi"].effect is Effect.NOW and changes["node0 2Mi"].reversible
    assert changes["node0 2Mi"].path == N0_2M


def test_shrinking_is_planned_before_growing(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(nodes=2, pages={(1, 2048): 100}))
    _, plan = planned(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 10, "numaNode": 0},
                                                     {"size": "2Mi", "count": 0, "numaNode": 1}]}})
    assert [c.target for c in plan.changes if c.subsystem == "hugepages"] == ["node1 2Mi", "node0 2Mi"]


def test_converged_node_plans_nothing(make_host) -> None:  # type: ignore[no-untyped-def]
    spec = {"hugepages": {"pages": [{"size": "2Mi", "count": 8, "numaNode": 0}]},
            "ksm": {"enabled": True, "pagesToScan": 1000}, "cpu": {"governor": "performance"}}
    host, _, _ = make_host(TreeSpec())
    assert applied(host, spec).exit_code == 0
    with host.recording() as since:
        _, plan = planned(host, spec)
        assert plan.changes == [] and plan.refusals == []
        assert applied(host, spec).exit_code == 0
    assert since.stats.writes == 0


def test_memory_floor_refuses_and_names_the_numbers(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(nodes=1, node_mem_kb=16 * 1024 * 1024))
    _, plan = planned(host, {"hugepages": {"pages": [{"size": "1Gi", "count": 13}]}})
    assert not plan.changes
    (refusal,) = plan.refusals
    assert refusal.target == "node0" and not refusal.forceable
    assert "below the floor of 4.0 GiB (max(10%, 4.0 GiB))" in refusal.reason
    _, plan = planned(host, {"hugepages": {"pages": [{"size": "1Gi", "count": 12}]}})
    assert not plan.refusals
    _, plan = planned(host, {"hugepages": {"reserveHostMemory": {"percent": 50},
                                           "pages": [{"size": "1Gi", "count": 12}]}})
    assert plan.refusals


def test_memory_floor_is_never_forced(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(nodes=1, node_mem_kb=8 * 1024 * 1024))
    _, plan = planned(host, {"hugepages": {"pages": [{"size": "1Gi", "count": 6}]}}, force=True)
    assert plan.refusals and not plan.forced


def test_kubelet_running_makes_page_changes_kubelet_restart(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    (root / "proc/4242").mkdir()
    (root / "proc/4242/comm").write_text("kubelet\n")
    _, plan = planned(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 4, "numaNode": 0}]}})
    assert plan.changes[0].effect is Effect.KUBELET_RESTART


def test_default_size_becomes_a_boot_argument(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec())
    _, plan = planned(host, {"hugepages": {"defaultSize": "1Gi", "pages": []}})
    (change,) = plan.changes
    assert change.subsystem == "bootargs" and change.effect is Effect.REBOOT
    assert change.desired == ["default_hugepagesz=1G"]
    _, plan = planned(host, {"hugepages": {"defaultSize": "2Mi"}})
    assert plan.changes == []  # already the running default: no argument, no reboot


def test_boot_arguments_for_isolation_and_iommu(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(cpus=8, nodes=2, iommu=False))
    _, plan = planned(host, {"cpu": {"reserved": "0,4", "isolated": "1-3,5-7"},
                             "kernel": {"iommu": True, "additionalArgs": ["nosoftlockup"]}})
    (change,) = plan.changes
    assert change.desired == ["isolcpus=managed_irq,domain,1-3,5-7", "nohz_full=1-3,5-7", "rcu_nocbs=1-3,5-7",
                              "irqaffinity=0,4", "systemd.cpu_affinity=0,4", "intel_iommu=on", "iommu=pt",
                              "nosoftlockup"]
    assert change.effect is Effect.REBOOT
    assert change.detail["regenerate"] == ["update-grub"]


def test_iommu_argument_left_out_when_already_on(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(iommu=True, cmdline="ro intel_iommu=on iommu=pt", vendor="GenuineIntel"))
    _, plan = planned(host, {"kernel": {"iommu": True}})
    (change,) = plan.changes  # kept (they booted with it) but nothing pending
    assert change.effect is Effect.NOW and change.desired == ["intel_iommu=on", "iommu=pt"]
    host2, _, _ = make_host(TreeSpec(iommu=True, cmdline="ro iommu=pt", vendor="AuthenticAMD"))
    _, plan = planned(host2, {"kernel": {"iommu": True}})
    (change,) = plan.changes
    assert change.desired == ["iommu=pt"]  # AMD IOMMU already on: amd_iommu=on would add nothing


def test_isolating_every_cpu_is_refused_unless_forced(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(cpus=4, nodes=1))
    _, plan = planned(host, {"cpu": {"isolated": "0-3"}})
    assert {r.target for r in plan.refusals} >= {"isolcpus", "node0"}
    assert all(r.forceable for r in plan.refusals)
    _, plan = planned(host, {"cpu": {"isolated": "0-3"}}, force=True)
    assert not plan.refusals and plan.forced and plan.changes


def test_numa_node_without_housekeeping_cpu_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(cpus=8, nodes=2))
    _, plan = planned(host, {"cpu": {"reserved": "0-1", "isolated": "2-7"}})
    (refusal,) = plan.refusals
    assert refusal.target == "node1" and "no housekeeping CPU" in refusal.reason


def test_governor_on_isolated_cpus_only(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(cpus=4, nodes=1))
    _, plan = planned(host, {"cpu": {"reserved": "0", "isolated": "1-3", "governor": "performance"}}, force=True)
    governors = [c for c in plan.changes if c.subsystem == "cpu-governor"]
    assert [c.path for c in governors] == [f"/sys/devices/system/cpu/cpufreq/policy{i}/scaling_governor"
                                          for i in (1, 2, 3)]
    assert all(c.current == "powersave" and c.desired == "performance" for c in governors)


def test_governor_skipped_without_cpufreq_and_refused_when_not_offered(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(governors=None))
    _, plan = planned(host, {"cpu": {"governor": "performance"}})
    assert not plan.changes and not plan.refusals
    assert "no cpufreq" in plan.skipped[0].reason
    host2, _, _ = make_host(TreeSpec())
    _, plan = planned(host2, {"cpu": {"governor": "schedutil"}})
    assert plan.refusals and "not offered" in plan.refusals[0].reason


def test_ksm_skipped_when_kubevirt_manages_it(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec())
    _, plan = planned(host, {"ksm": {"enabled": True}}, annotations={"kubevirt.io/ksm-handler-managed": "true"})
    assert not plan.changes and "KubeVirt" in plan.skipped[0].reason
    _, plan = planned(host, {"ksm": {"enabled": True}}, annotations={"kubevirt.io/ksm-handler-managed": "false"})
    assert plan.changes


def test_ksm_disable_is_one_unmerging_change(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(ksm={"run": 1, "pages_to_scan": 100, "sleep_millisecs": 20, "pages_sharing": 7}))
    _, plan = planned(host, {"ksm": {"enabled": False}})
    (change,) = plan.changes
    assert (change.action, change.current, change.desired) == ("ksm-stop", 1, 0)
    assert "unmerges 7 shared pages" in change.note


def test_enabling_ksm_without_ksm_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(ksm=None))
    _, plan = planned(host, {"ksm": {"enabled": True}})
    assert plan.refusals and "no KSM" in plan.refusals[0].reason
    _, plan = planned(host, {"ksm": {"enabled": False}})
    assert not plan.refusals and plan.skipped


def test_pending_reboot_args_and_the_per_node_form() -> None:
    args = ["isolcpus=managed_irq,domain,2-3", "hugepagesz=1G", "hugepages=0:2,1:2"]
    assert pending(args, "ro isolcpus=managed_irq,domain,2-3 hugepagesz=1G hugepages=0:2,1:2") == []
    assert pending(args, "ro isolcpus=managed_irq,domain,2-3 hugepagesz=1G hugepages=4") == args[1:]
    assert pending(["quiet"], "ro quiet") == [] and pending(["quiet"], "ro") == ["quiet"]
    assert supports_node_form("5.16.0") and supports_node_form("6.8.0-45-generic")
    assert not supports_node_form("5.15.0-91-generic") and not supports_node_form("4.18.0-513.el8.x86_64")
    assert boot_hugepage_args({1048576: {0: 2, 1: 3}}, "6.1.0")[0] == ["hugepagesz=1G", "hugepages=0:2,1:3"]
    assert boot_hugepage_args({1048576: {0: 2, 1: 3}}, "5.4.0")[0] == ["hugepagesz=1G", "hugepages=5"]


def test_profile_is_installed_for_the_boot_unit(make_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    result = applied(host, {"ksm": {"enabled": True}}, boot=False)
    assert result.exit_code == 0
    assert "kind: NodeProfile" in (root / "etc/nodeagent/profile.yaml").read_text()
    _, plan = planned(host, {"ksm": {"enabled": True}}, boot=True)
    assert not plan.changes


def test_dropin_round_trip() -> None:
    from nodeagent.owned import render_dropin as render

    text = render("p", ["a=1", "b"])
    assert text is not None and dropin_args(text) == ["a=1", "b"]
    assert render("p", []) is None


def test_ksm_skipped_when_kubevirt_turned_it_on(make_host) -> None:  # type: ignore[no-untyped-def]
    # virt-handler's Node label kubevirt.io/ksm-enabled (passed along by node_annotations) is honoured too.
    host, _, _ = make_host()
    _, plan = planned(host, {"ksm": {"enabled": True}}, annotations={"kubevirt.io/ksm-enabled": "true"})
    assert not [c for c in plan.changes if c.subsystem == "ksm"]
    assert any("kubevirt.io/ksm-enabled=true" in s.reason for s in plan.skipped)
    _, plan = planned(host, {"ksm": {"enabled": True}}, annotations={"kubevirt.io/ksm-enabled": "false"})
    assert [c for c in plan.changes if c.subsystem == "ksm"]
