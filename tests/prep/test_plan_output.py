"""`plan`/`apply` text a person can read: identical per-CPU lines grouped by CPU list, natural order,
no stutter; the JSON output keeps one entry per change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from nodeagent.cli import main
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Skip, Subsystem
from nodeagent.prep.summary import plan_text
from tests.prep.helpers import applied, planned, profile_doc
from tests.support.trees import TreeSpec, build_tree, nps4_like_pci

CPUS = 224


def _plan(tmp_path: Path, tree: TreeSpec, spec: dict[str, Any], *args: str) -> Any:
    root = build_tree(tmp_path / "host", tree)
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(profile_doc(spec, name="high-density")))
    return CliRunner().invoke(main, ["--root", str(root), "plan", "-f", str(profile), *args], catch_exceptions=False)


def test_224_identical_governor_changes_are_one_line(tmp_path: Path) -> None:
    text = _plan(tmp_path, TreeSpec(cpus=CPUS, nodes=2), {"cpu": {"governor": "performance"}})
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0] == f"profile high-density: {CPUS + 1} changes"  # one per policy, and the profile install
    assert "  ~ cpu-governor CPUs 0-223: powersave -> performance  [now]" in lines
    assert "      for all CPUs" in lines  # not "for the all CPUs"
    assert not [line for line in lines if "policy" in line]


def test_json_keeps_one_change_per_policy_in_natural_order(tmp_path: Path) -> None:
    data = json.loads(_plan(tmp_path, TreeSpec(cpus=CPUS, nodes=2), {"cpu": {"governor": "performance"}},
                            "-o", "json").output)
    targets = [c["target"] for c in data["changes"] if c["subsystem"] == "cpu-governor"]
    assert targets == [f"policy{i} (CPUs {i})" for i in range(CPUS)]  # policy2 before policy10
    assert data["changes"][5]["detail"] == {"cpus": [5]}


def test_identical_refusals_are_grouped_too(tmp_path: Path) -> None:
    result = _plan(tmp_path, TreeSpec(cpus=CPUS, nodes=2), {"cpu": {"governor": "schedutil"}})
    assert result.exit_code == 1
    refused = [line for line in result.output.splitlines() if line.startswith("  ! ")]
    assert refused == ["  ! cpu-governor CPUs 0-223: governor 'schedutil' is not offered for these CPUs "
                       "(available: performance, powersave)"]


def test_changes_differing_in_more_than_cpus_stay_apart() -> None:
    def governor(cpu: int, current: str) -> Change:
        return Change(Subsystem.GOVERNOR, f"policy{cpu} (CPUs {cpu})", current, "performance", Effect.NOW, True,
                      Action.ATTR, f"/sys/devices/system/cpu/cpufreq/policy{cpu}/scaling_governor",
                      note="for all CPUs", detail={"cpus": [cpu]})

    plan = Plan("p", changes=[governor(0, "powersave"), governor(1, "schedutil"), governor(2, "powersave"),
                              governor(3, "schedutil"), governor(7, "ondemand")])
    lines = [line for line in plan_text(plan).splitlines() if line.startswith("  ~")]
    assert lines == ["  ~ cpu-governor CPUs 0,2: powersave -> performance  [now]",
                     "  ~ cpu-governor CPUs 1,3: schedutil -> performance  [now]",
                     "  ~ cpu-governor policy7 (CPUs 7): ondemand -> performance  [now]"]  # a group of one


def test_no_stutter_in_targets_that_name_their_subsystem(tmp_path: Path) -> None:
    plan = Plan("p", changes=[Change(Subsystem.KSM, "ksm run", 0, 1, Effect.NOW, True, Action.ATTR,
                                     "/sys/kernel/mm/ksm/run")],
                refusals=[Refusal(Subsystem.KSM, "ksm", "this kernel has no KSM")],
                skipped=[Skip(Subsystem.KSM, "ksm", "KubeVirt owns KSM here")])
    text = plan_text(plan)
    assert "ksm ksm" not in text
    assert "  ~ ksm run: 0 -> 1  [now]" in text
    assert "  ! ksm: this kernel has no KSM" in text and "  - ksm: KubeVirt owns KSM here" in text


def test_the_gpu_note_names_the_gpu(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(vendor="AuthenticAMD", cmdline="ro amd_iommu=on iommu=pt", pci=nps4_like_pci()))
    _, plan = planned(host, {"gpu": {"passthrough": [{"vendor": "10de", "device": "2684"}]}})
    gpu = next(c for c in plan.changes if c.target == "0000:41:00.0")
    assert gpu.note.startswith("GPU ") and "IOMMU group" in gpu.note
    assert gpu.note != "the GPU"


def test_apply_text_groups_the_applied_policies(make_host) -> None:  # type: ignore[no-untyped-def]
    from nodeagent.prep.summary import apply_text

    host, _, _ = make_host(TreeSpec(cpus=16, nodes=2))
    result = applied(host, {"cpu": {"governor": "performance"}})
    assert result.exit_code == 0, result.failure
    lines = apply_text(result).splitlines()
    assert lines[0] == "profile test: 16 changes applied"
    assert "  applied          cpu-governor CPUs 0-15" in lines
