"""The table of workload classes: overrides and added classes, their validation, and where they take effect
(check --for, labels, metrics, a profile's spec.workloadClasses). Hosts are built in code or generated
from fixtures/specs (tests/test_workload_fixtures.py judges every fixture host against the table)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from nodeagent.cli import main
from nodeagent.inventory import NumaNode
from nodeagent.profile import ProfileError, parse_profile_text
from nodeagent.workloads import (
    WorkloadClassesError,
    default_table,
    load_workload_classes,
    parse_workload_classes_text,
    table_for,
)
from tests.support.factories import make_gpu, make_inventory, pool

HEADER = "apiVersion: nodeagent.io/v1alpha1\nkind: WorkloadClasses\n"


def classes(body: str) -> str:
    return HEADER + "classes:\n" + body


def run(*args: str):
    return CliRunner().invoke(main, list(args))


# --- the document -----------------------------------------------------------------------------------


def test_overriding_a_requirement_keeps_the_others() -> None:
    table = parse_workload_classes_text(classes("  ai-training:\n    requires: {gpus: {passthrough: 1}}\n"))
    ai = table["ai-training"]
    assert [r.kind for r in ai.requirements] == ["kvm", "iommu", "hugepages", "gpus"]
    assert ai.requirement("gpus").raw == {"passthrough": 1}
    assert table.names == default_table().names  # an override adds nothing


def test_extends_null_and_a_new_class() -> None:
    table = parse_workload_classes_text(classes(
        "  vm-tiny:\n    requires: {kvm: true, hugepages: [{size: 2Mi, amount: 1Gi}]}\n"
        "  db-small:\n    extends: database\n    requires: {hugepages: [{size: 1Gi, count: 8}], kubelet: null}\n"
        "  realtime: null\n"))
    assert table.names == (*(n for n in default_table().names if n != "realtime"), "vm-tiny", "db-small")
    assert [r.kind for r in table["db-small"].requirements] == ["kvm", "hugepages", "ksm"]
    assert table["db-small"].description == ""  # extends takes requirements, not the parent's words
    inv = make_inventory(hugepages={"2Mi": pool("2Mi", 511), "1Gi": pool("1Gi", 8)})
    ready = table.readiness(inv)
    assert ready["db-small"].ready and not ready["database"].ready
    assert ready["vm-tiny"].reasons == ["needs 512 2Mi hugepages (1Gi) configured, has 511"]


@pytest.mark.parametrize(("body", "error"), [
    ("  ai-training:\n    requires: {gpus: {passthrough: two}}\n",
     "classes.ai-training.requires.gpus.passthrough: 'two' is not a number of GPUs from 1 to 1024"),
    ("  ai-training:\n    requires: {gpus: {passthru: 2}}\n",
     "classes.ai-training.requires.gpus.passthru: unknown field (allowed here: passthrough"),
    ("  ai-training:\n    requires: {gpu: {passthrough: 2}}\n",
     "classes.ai-training.requires.gpu: unknown requirement (kinds: kvm, iommu, realtimeKernel"),
    ("  database:\n    requires: {hugepages: [{size: huge, count: 64}]}\n",
     "classes.database.requires.hugepages[0].size: 'huge' is not a page size such as 2Mi or 1Gi"),
    ("  database:\n    requires: {hugepages: [{size: 1Gi, count: 64, amount: 64Gi}]}\n",
     "classes.database.requires.hugepages[0]: give either count (pages) or amount"),
    ("  database:\n    requires: {hugepages: [{size: 1Gi, count: 64, perNumaNode: some}]}\n",
     "classes.database.requires.hugepages[0].perNumaNode: 'some' is not one of any, every"),
    ("  database:\n    requires: {kubelet: {cpuManager: Static}}\n",
     "classes.database.requires.kubelet.cpuManager: 'Static' is not a CPU manager policy (one of none, static"),
    ("  database:\n    requires: {ksm: maybe}\n",
     "classes.database.requires.ksm: 'maybe' is not 'running' or 'stopped'"),
    ("  realtime:\n    requires: {isolatedCpus: {count: 0}}\n",
     "classes.realtime.requires.isolatedCpus.count: 0 is not an integer from 1 to 65536"),
    ("  hpc:\n    requires: {cpuFlags: avx512f}\n",
     "classes.hpc.requires.cpuFlags: 'avx512f' is not a list of /proc/cpuinfo flags"),
    ("  hpc:\n    requires: {kvm: false}\n",
     "classes.hpc.requires.kvm: False is not true (to drop the requirement, give null)"),
    ("  Bad Name:\n    requires: {kvm: true}\n",
     "classes['Bad Name']: 'Bad Name' is not a name that makes 'ready-<name>' a label name"),
    (f"  {'x' * 58}:\n    requires: {{kvm: true}}\n", "is not a name that makes 'ready-<name>' a label name"),
    ("  small:\n    extends: databse\n", "classes.small.extends: 'databse' is not another class defined above"),
    ("  small:\n    require: {kvm: true}\n", "classes.small.require: unknown field (allowed here: description, "
                                             "extends, requires)"),
    ("  small:\n    description: nothing\n", "classes.small.requires: a class needs at least one requirement"),
    ("  gaming: null\n", "classes.gaming: null removes a class, and there is no class 'gaming'"),
    ("  general:\n    requires: {kvm: true}\n    requires: {iommu: true}\n", "duplicate key 'requires'"),
])
def test_a_bad_document_is_refused_naming_the_field(body: str, error: str) -> None:
    with pytest.raises(WorkloadClassesError) as caught:
        parse_workload_classes_text(classes(body), source="classes.yaml")
    assert error in str(caught.value), str(caught.value)
    assert str(caught.value).startswith("classes.yaml: ")


def test_every_problem_is_reported_at_once_and_the_header_is_checked() -> None:
    text = ("apiVersion: v1\nkind: ConfigMap\nclasess: {}\n")
    with pytest.raises(WorkloadClassesError) as caught:
        parse_workload_classes_text(text)
    assert caught.value.errors == [
        "clasess: unknown field (allowed here: apiVersion, kind, metadata, classes)",
        "classes: required field is missing",
        "apiVersion: 'v1' is not 'nodeagent.io/v1alpha1'",
        "kind: 'ConfigMap' is not 'WorkloadClasses'",
    ]
    with pytest.raises(WorkloadClassesError) as caught:
        parse_workload_classes_text(classes("  a:\n    requires: {gpus: {passthrough: 0}}\n"
                                            "  b:\n    requires: {ksm: 1}\n"))
    assert len(caught.value.errors) == 2


def test_a_file_too_large_or_missing_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(HEADER + "#" * 70000 + "\nclasses: {}\n")
    with pytest.raises(WorkloadClassesError, match="larger than 64 KiB"):
        load_workload_classes(str(big))
    with pytest.raises(WorkloadClassesError, match="cannot read the workload classes"):
        load_workload_classes(str(tmp_path / "none.yaml"))


# --- requirement kinds ------------------------------------------------------------------------------


def _two_nodes(pages_0: int, pages_1: int):
    inv = make_inventory(hugepages={"1Gi": pool("1Gi", pages_0 + pages_1)})
    numa = [NumaNode(0, [0, 1], 32 * 2**30, 30 * 2**30, [10, 21], {"1Gi": pool("1Gi", pages_0, reserved=None)}),
            NumaNode(1, [2, 3], 32 * 2**30, 30 * 2**30, [21, 10], {"1Gi": pool("1Gi", pages_1, reserved=None)})]
    return replace(inv, numa=numa)


def test_hugepages_per_numa_node() -> None:
    table = parse_workload_classes_text(classes(
        "  one-node:\n    requires: {hugepages: [{size: 1Gi, count: 16, perNumaNode: any}]}\n"
        "  each-node:\n    requires: {hugepages: [{size: 1Gi, count: 16, perNumaNode: every}]}\n"
        "  total:\n    requires: {hugepages: [{size: 1Gi, count: 16}]}\n"))
    split = table.readiness(_two_nodes(8, 8))
    assert split["total"].ready  # 16 on the host…
    assert split["one-node"].reasons == [  # …but a VM kept on one node finds 8
        "needs 16 1Gi hugepages configured on one NUMA node, has at most 8 (node 0: 8, node 1: 8)"]
    assert split["each-node"].reasons == [
        "needs 16 1Gi hugepages configured on every NUMA node, has node 0: 8, node 1: 8"]
    lopsided = table.readiness(_two_nodes(16, 0))
    assert lopsided["one-node"].ready and not lopsided["each-node"].ready


def test_kubelet_requirement_accepts_any_of_a_list() -> None:
    table = parse_workload_classes_text(classes(
        "  aligned:\n    requires: {kubelet: {topologyManager: [restricted, single-numa-node]}}\n"))
    kubelet = replace(make_inventory().kubelet, config_present=True, config_path="/var/lib/kubelet/config.yaml")
    for policy, ready in (("restricted", True), ("single-numa-node", True), ("best-effort", False), (None, False)):
        inv = make_inventory(kubelet=replace(kubelet, topology_manager_policy=policy))
        assert table.readiness(inv)["aligned"].ready is ready, policy


# --- a profile's spec.workloadClasses ---------------------------------------------------------------

PROFILE = """apiVersion: nodeagent.io/v1alpha1
kind: NodeProfile
metadata: {name: gpu}
spec:
  workloadClasses:
    ai-training:
      requires: {gpus: {passthrough: 1}, hugepages: null}
    inference:
      extends: ai-training
      description: one GPU, no hugepages
"""


def test_a_profile_section_overrides_and_adds_classes() -> None:
    profile = parse_profile_text(PROFILE)
    table = table_for(None, profile)
    assert table.names[-1] == "inference" and table["inference"].source == "profile gpu"
    base = make_inventory(gpus=[make_gpu()])
    inv = replace(base, iommu=replace(base.iommu, enabled=True, groups=4))
    assert table.readiness(inv)["ai-training"].ready and table.readiness(inv)["inference"].ready
    assert not default_table().readiness(inv)["ai-training"].ready


def test_a_bad_profile_section_is_a_profile_error_naming_the_field() -> None:
    bad = PROFILE.replace("passthrough: 1", "passthrough: -1")
    with pytest.raises(ProfileError) as caught:
        parse_profile_text(bad)
    assert "spec.workloadClasses.ai-training.requires.gpus.passthrough: -1 is not a number of GPUs" in str(caught.value)


def test_a_profile_over_a_file_layers_in_order() -> None:
    base = parse_workload_classes_text(classes("  ai-training:\n    requires: {gpus: {passthrough: 8}}\n"))
    profile = parse_profile_text(PROFILE.replace("      requires: {gpus: {passthrough: 1}, hugepages: null}\n",
                                                 "      requires: {hugepages: null}\n"))
    table = table_for(base, profile)
    assert table["ai-training"].requirement("gpus").raw == {"passthrough": 8}  # the file's, kept
    assert table["ai-training"].requirement("hugepages") is None  # the profile's, on top


# --- the CLI ----------------------------------------------------------------------------------------


@pytest.fixture
def classes_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes.yaml"
    path.write_text(classes("  gpu-4:\n    description: four passthrough GPUs\n"
                            "    requires: {kvm: true, gpus: {passthrough: 4}}\n"
                            "  gpu-8:\n    extends: gpu-4\n    requires: {gpus: {passthrough: 8}}\n"))
    return path


def test_check_for_an_added_class(host_trees, classes_file: Path) -> None:
    root = str(host_trees("intel-2s-8gpu"))  # 4 passthrough-ready H100s
    ok = run("--root", root, "check", "--workload-classes", str(classes_file), "--for", "gpu-4", "-o", "json")
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.output)
    assert data["readiness"] == {"gpu-4": {"workload": "gpu-4", "ready": True, "reasons": [], "notes": [],
                                           "blocked_by": []}}
    short = run("--root", root, "check", "--workload-classes", str(classes_file), "--for", "gpu-8")
    assert short.exit_code == 1
    assert "Checking readiness for gpu-8 VMs" in short.output
    assert "needs 8 passthrough-ready GPUs, has 4" in short.output
    unknown = run("--root", root, "check", "--for", "gpu-4")  # not without the file
    assert unknown.exit_code == 2 and "'gpu-4' is not a workload class" in unknown.output


def test_labels_and_metrics_follow_the_file(host_trees, classes_file: Path) -> None:
    root = str(host_trees("intel-2s-8gpu"))
    data = json.loads(run("--root", root, "labels", "--workload-classes", str(classes_file), "-o", "json").output)
    assert data["labels"]["nodeagent.io/ready-gpu-4"] == "true"
    assert data["labels"]["nodeagent.io/ready-gpu-8"] == "false"
    assert data["readiness"]["gpu-8"]["reasons"] == ["needs 8 passthrough-ready GPUs, has 4"]
    assert "nodeagent.io/ready-gpu-8" in data["annotations"]["nodeagent.io/owned-labels"].split(",")
    text = run("--root", root, "metrics", "--no-libvirt", "--no-nvml",
               "--workload-classes", str(classes_file)).output
    assert 'nodeagent_workload_ready{workload="gpu-4"} 1\n' in text
    assert 'nodeagent_workload_ready{workload="gpu-8"} 0\n' in text
    assert 'nodeagent_workload_ready{workload="general"} 1\n' in text


def test_metrics_name_the_requirement_that_blocks_each_class(host_trees) -> None:
    # db-kubelet-defaults has the database recipe's 64 x 1Gi pages and KSM off, and a kubeadm kubelet
    # configuration that sets no manager policy: database is blocked by the kubelet alone.
    text = run("--root", str(host_trees("db-kubelet-defaults")), "metrics", "--no-libvirt", "--no-nvml").output
    met = {(s.labels["workload"], s.labels["requirement"]): s.value
           for family in text_string_to_metric_families(text) if family.name == "nodeagent_workload_requirement_met"
           for s in family.samples}
    assert met[("database", "kubelet")] == 0
    assert met[("database", "hugepages")] == met[("database", "ksm")] == met[("database", "kvm")] == 1
    assert met[("general", "kvm")] == 1
    assert met[("high-density", "ksm")] == 0
    ready = {s.labels["workload"]: s.value for family in text_string_to_metric_families(text)
             if family.name == "nodeagent_workload_ready" for s in family.samples}
    # A class is ready exactly when none of its requirements is unmet.
    assert ready == {w: float(all(v for (cw, _), v in met.items() if cw == w)) for w in ready}
    data = json.loads(run("--root", str(host_trees("db-kubelet-defaults")), "check", "-o", "json").output)
    assert data["readiness"]["database"]["blocked_by"] == ["kubelet"]


def test_labels_json_shows_the_kubelet_note_without_blocking(host_trees) -> None:
    data = json.loads(run("--root", str(host_trees("amd-nps4-consumer")), "labels", "-o", "json").output)
    assert data["readiness"]["general"] == {"ready": True, "reasons": [], "notes": []}
    assert data["readiness"]["hpc"]["notes"] == [
        "kubelet managers unknown (no kubelet configuration found): not judged; the class needs CPU manager "
        "static, topology manager single-numa-node or restricted, memory manager Static"]


@pytest.mark.parametrize("command", [["check"], ["labels"], ["metrics", "--no-libvirt", "--no-nvml"]])
def test_a_bad_file_exits_2_naming_the_field(host_trees, tmp_path: Path, command: list[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(classes("  database:\n    requires: {hugepages: [{size: 1Gi, count: lots}]}\n"))
    result = run("--root", str(host_trees("minimal")), *command, "--workload-classes", str(bad))
    assert result.exit_code == 2
    assert (f"{bad}: classes.database.requires.hugepages[0].count: 'lots' is not a number of pages"
            in result.output), result.output
    assert "Traceback" not in result.output


def test_labels_with_a_profile_section(host_trees, tmp_path: Path) -> None:
    profile = tmp_path / "gpu.yaml"
    profile.write_text(PROFILE)
    data = json.loads(run("--root", str(host_trees("amd-nps4-consumer")), "labels", "-f", str(profile),
                          "-o", "json").output)
    # one passthrough-ready RTX 4090, IOMMU on: enough for the profile's one-GPU ai-training and inference
    assert data["labels"]["nodeagent.io/ready-ai-training"] == "true"
    assert data["labels"]["nodeagent.io/ready-inference"] == "true"
    bad = tmp_path / "bad.yaml"
    bad.write_text(PROFILE.replace("extends: ai-training", "extends: training"))
    for command in (["labels", "-f", str(bad)], ["plan", "-f", str(bad)]):
        result = run("--root", str(host_trees("amd-nps4-consumer")), *command)
        assert result.exit_code == 2, (command, result.output)
        assert "spec.workloadClasses.inference.extends: 'training' is not another class" in result.output
