"""NodeProfile parsing: good profiles, a table of bad ones, and schema fuzzing.

Every bad profile must end in one ``ProfileError`` that names the field and the accepted form;
through the CLI, exit 2 with nothing written.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeagent.cli import main
from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.profile import GpuSelector, ProfileError, Taint, load_profile, parse_profile, parse_profile_text
from tests.support.trees import TreeSpec, build_tree, snapshot

PROFILES = Path(__file__).resolve().parents[2] / "daemonset" / "profiles"

GOOD: dict[str, Any] = {
    "apiVersion": "nodeagent.io/v1alpha1",
    "kind": "NodeProfile",
    "metadata": {"name": "gpu-hpc"},
    "spec": {
        "nodeSelector": {"matchLabels": {"pool": "gpu"}},
        "cpu": {"reserved": "0-1", "isolated": "2-7", "governor": "performance"},
        "hugepages": {"defaultSize": "1Gi", "pages": [{"size": "1Gi", "count": 2, "numaNode": 0},
                                                      {"size": "2M", "count": 128}]},
        "gpu": {"passthrough": [{"vendor": "10de", "device": "2330"}, {"address": "ca:00.0"}]},
        "ksm": {"enabled": False},
        "kernel": {"iommu": True, "additionalArgs": ["mitigations=off"]},
        "labels": {"realtime": "true"},
        "taints": [{"key": "high-performance", "value": "true", "effect": "NoSchedule"}],
    },
}


def test_contract_example_parses_into_the_labels_api() -> None:
    profile = parse_profile(copy.deepcopy(GOOD))
    assert profile.name == "gpu-hpc"
    assert profile.node_selector == {"pool": "gpu"}
    assert profile.labels == {"realtime": "true"}
    assert profile.taints == [Taint("high-performance", "true", "NoSchedule")]
    assert profile.gpu_passthrough == [GpuSelector("10de", "2330", None), GpuSelector(None, None, "0000:ca:00.0")]
    assert profile.hugepages is not None
    assert [(p.size, p.count, p.numa_node) for p in profile.hugepages.pages] == [("1Gi", 2, 0), ("2Mi", 128, None)]
    assert profile.hugepages.default_size_kb == 1048576
    assert profile.cpu is not None and profile.cpu.isolated == [2, 3, 4, 5, 6, 7]
    assert profile.iommu_wanted


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.yaml")), ids=lambda p: p.stem)
def test_example_profiles_are_valid(path: Path) -> None:
    profile = load_profile(str(path))
    assert profile.name == path.stem


def test_every_workload_has_an_example_profile() -> None:
    assert {p.stem for p in PROFILES.glob("*.yaml")} >= {"realtime-nfv", "hpc", "ai-training", "database",
                                                         "high-density"}


def _with(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one field replaced (value ``...`` deletes it)."""
    doc = copy.deepcopy(GOOD)
    keys = path.split(".")
    node: Any = doc
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


BAD = [
    (_with("spec.hugepages.pages.1", {"sise": "2Mi", "count": 4}),
     "spec.hugepages.pages[1].sise: unknown field"),
    (_with("spec.hugepages.pages.1.size", "3Mb"), "spec.hugepages.pages[1].size: '3Mb' is not a page size such as 2Mi"),
    (_with("spec.hugepages.pages.0.count", -1), "spec.hugepages.pages[0].count: -1 is not an integer from 0"),
    (_with("spec.hugepages.pages.0.count", "16"), "spec.hugepages.pages[0].count: '16' is not an integer"),
    (_with("spec.hugepages.pages.0.count", True), "spec.hugepages.pages[0].count: True is not an integer"),
    (_with("spec.hugepages.pages.0.numaNode", "zero"), "spec.hugepages.pages[0].numaNode: 'zero' is not an integer"),
    (_with("spec.hugepages.pages", {"size": "2Mi"}), "spec.hugepages.pages: expected a list"),
    (_with("spec.hugepages.pages.1", {"size": "1Gi", "count": 1, "numaNode": 0}),
     "spec.hugepages.pages[1]: duplicates pages[0]"),
    (_with("spec.hugepages.defaultSize", "huge"), "spec.hugepages.defaultSize: 'huge' is not a page size"),
    (_with("spec.hugepages.reserveHostMemory", {"percent": 95}),
     "spec.hugepages.reserveHostMemory.percent: 95 is not a number from 0 to 90"),
    (_with("spec.hugepages.reserveHostMemory", {"minimum": "4 lots"}),
     "spec.hugepages.reserveHostMemory.minimum: '4 lots' is not a memory quantity"),
    (_with("spec.cpu.isolated", "2-x"), "spec.cpu.isolated: '2-x' is not a kernel cpulist"),
    (_with("spec.cpu.isolated", "1-7"), "spec.cpu.isolated: CPUs 1 are also in spec.cpu.reserved"),
    (_with("spec.cpu.reserved", ""), "spec.cpu.reserved: empty CPU list"),
    (_with("spec.cpu.governor", "Turbo Mode"), "spec.cpu.governor: 'Turbo Mode' is not a cpufreq governor name"),
    (_with("spec.cpu.turbo", True), "spec.cpu.turbo: unknown field"),
    (_with("spec.gpu.passthrough.0", {"device": "2330"}), "spec.gpu.passthrough[0].vendor: required with device"),
    (_with("spec.gpu.passthrough.0", {"vendor": "nvidia"}), "spec.gpu.passthrough[0].vendor: 'nvidia' is not four hex"),
    (_with("spec.gpu.passthrough.1", {"address": "ca:00"}), "spec.gpu.passthrough[1].address: 'ca:00' is not a PCI"),
    (_with("spec.gpu.passthrough.1", {}), "spec.gpu.passthrough[1]: give at least one of vendor, device, address"),
    (_with("spec.ksm", {"enabled": "yes"}), "spec.ksm.enabled: 'yes' is not a boolean"),
    (_with("spec.ksm", {"enabled": False, "pagesToScan": 10}), "spec.ksm.pagesToScan: only meaningful with enabled"),
    (_with("spec.ksm", {"enabled": True, "pagesToScan": 0}), "spec.ksm.pagesToScan: 0 is not an integer from 1"),
    (_with("spec.ksm", {"pagesToScan": 10}), "spec.ksm.enabled: required field is missing"),
    (_with("spec.kernel.additionalArgs", ["quiet; rm -rf /"]), "spec.kernel.additionalArgs[0]: 'quiet; rm -rf /'"),
    (_with("spec.kernel.additionalArgs", ['a="b c"']), "spec.kernel.additionalArgs[0]"),
    (_with("spec.kernel.additionalArgs", ["isolcpus=1"]), "spec.kernel.additionalArgs[0]: isolcpus= is computed"),
    (_with("spec.kernel.iommu", "on"), "spec.kernel.iommu: 'on' is not a boolean"),
    (_with("spec.labels", {"realtime": True}), "spec.labels.realtime: True is not a string"),
    (_with("spec.labels", {"bad key!": "x"}), "spec.labels['bad key!']: 'bad key!' is not a Kubernetes label key"),
    (_with("spec.taints.0.effect", "NoWay"), "spec.taints[0].effect: 'NoWay' is not one of NoSchedule"),
    (_with("spec.taints.0", {"value": "x", "effect": "NoSchedule"}), "spec.taints[0].key: required field"),
    (_with("spec.nodeSelector", {"matchExpressions": []}), "spec.nodeSelector.matchExpressions: unknown field"),
    (_with("metadata.name", "Not_A_Name"), "metadata.name: 'Not_A_Name' is not a lower-case DNS name"),
    (_with("metadata", ...), "metadata: required field is missing"),
    (_with("apiVersion", "v1"), "apiVersion: 'v1' is not 'nodeagent.io/v1alpha1'"),
    (_with("kind", "Node"), "kind: 'Node' is not 'NodeProfile'"),
    (_with("spec.extra", 1), "spec.extra: unknown field"),
    ([1, 2], "(profile): expected a mapping"),
]


@pytest.mark.parametrize(("doc", "message"), BAD, ids=[m.split(":")[0] + f"#{i}" for i, (_, m) in enumerate(BAD)])
def test_bad_profile_names_the_field(doc: Any, message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(doc)
    assert any(line.startswith(message) for line in caught.value.errors), caught.value.errors


def test_all_errors_are_reported_at_once() -> None:
    doc = _with("spec.hugepages.pages.1", {"sise": "2Mi", "count": "x"})
    doc["spec"]["ksm"] = {"enabled": 1}
    with pytest.raises(ProfileError) as caught:
        parse_profile(doc)
    assert len(caught.value.errors) >= 3


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ProfileError, match=r"not valid YAML at line \d+, column \d+"):
        parse_profile_text("apiVersion: nodeagent.io/v1alpha1\nkind: NodeProfile\nspec: [\n  - a: b\n  c: d\n")


def test_two_documents_are_refused() -> None:
    text = yaml.safe_dump(GOOD) + "---\n" + yaml.safe_dump(GOOD)
    with pytest.raises(ProfileError, match="exactly one YAML document"):
        parse_profile_text(text)


def test_host_facts_are_checked_against_the_inventory(tmp_path: Path) -> None:
    inventory = discover(Host(str(build_tree(tmp_path, TreeSpec(cpus=8, nodes=2, page_sizes=(2048,))))))
    doc = _with("spec.hugepages.pages.0", {"size": "2Mi", "count": 2, "numaNode": 3})
    doc["spec"]["cpu"] = {"isolated": "4-9"}
    doc["spec"]["hugepages"]["defaultSize"] = "2Mi"
    doc["spec"]["hugepages"]["pages"][1] = {"size": "1Gi", "count": 1}
    with pytest.raises(ProfileError) as caught:
        parse_profile(doc, inventory)
    errors = "\n".join(caught.value.errors)
    assert "spec.hugepages.pages[0].numaNode: NUMA node 3 does not exist on this host (nodes: 0, 1)" in errors
    assert "spec.cpu.isolated: CPUs 8-9 do not exist on this host (online: 0-7)" in errors
    assert "spec.hugepages.pages[1].size: 1Gi pages are not offered by this host's kernel (offered: 2Mi)" in errors


def test_accepted_size_forms() -> None:
    for form in ("2Mi", "2M", "2048kB", "2MB"):
        doc = _with("spec.hugepages.pages.1.size", form)
        profile = parse_profile(doc)
        assert profile.hugepages is not None and profile.hugepages.pages[1].size == "2Mi"


# --- through the CLI: exit 2, nothing written --------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "host", TreeSpec())


def _run_cli(tree: Path, profile: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--root", str(tree), *args, "-f", str(profile)], catch_exceptions=False)


@pytest.mark.parametrize("command", [["plan"], ["apply", "--yes"], ["apply", "--dry-run"]])
@pytest.mark.parametrize(("doc", "message"), BAD[:12], ids=[f"bad{i}" for i in range(12)])
def test_cli_bad_profile_exits_2_and_writes_nothing(tree: Path, tmp_path: Path, command: list[str], doc: Any,
                                                    message: str) -> None:
    profile = tmp_path / "bad.yaml"
    profile.write_text(yaml.safe_dump(doc))
    before = snapshot(tree)
    result = _run_cli(tree, profile, *command)
    assert result.exit_code == 2, result.output
    assert message.split(":", maxsplit=1)[0] in result.output
    assert "nothing was written" in result.output
    assert snapshot(tree) == before


# --- fuzzing -----------------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**7), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["2Mi", "1Gi", "0-3", "10de", "NoSchedule", "x" * 300]))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                       max_leaves=8)
_paths = st.sampled_from([
    "apiVersion", "kind", "metadata", "metadata.name", "spec", "spec.cpu", "spec.cpu.reserved", "spec.cpu.isolated",
    "spec.cpu.governor", "spec.hugepages", "spec.hugepages.defaultSize", "spec.hugepages.pages",
    "spec.hugepages.pages.0", "spec.hugepages.pages.0.size", "spec.hugepages.pages.0.count",
    "spec.hugepages.pages.0.numaNode", "spec.gpu", "spec.gpu.passthrough", "spec.gpu.passthrough.0",
    "spec.gpu.passthrough.0.vendor", "spec.ksm", "spec.ksm.enabled", "spec.kernel", "spec.kernel.additionalArgs",
    "spec.labels", "spec.taints", "spec.taints.0", "spec.nodeSelector", "spec.nodeSelector.matchLabels",
])


@settings(max_examples=400, deadline=None)
@given(mutations=st.lists(st.tuples(_paths, _values), min_size=1, max_size=3))
def test_fuzzed_profiles_either_parse_or_raise_profile_error(mutations: list[tuple[str, Any]]) -> None:
    doc = copy.deepcopy(GOOD)
    for path, value in mutations:
        try:
            doc = _with_doc(doc, path, value)
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    try:
        profile = parse_profile(doc)
    except ProfileError as exc:
        assert exc.errors and all(": " in line for line in exc.errors)
        return
    assert profile.name


def _with_doc(doc: Any, path: str, value: Any) -> Any:
    keys = path.split(".")
    node = doc
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=st.tuples(_paths, _values))
def test_fuzzed_invalid_profiles_exit_2_with_zero_writes(tree: Path, tmp_path: Path,
                                                        mutation: tuple[str, Any]) -> None:
    doc = copy.deepcopy(GOOD)
    try:
        doc = _with_doc(doc, *mutation)
    except (KeyError, IndexError, TypeError):
        return
    try:
        parse_profile(copy.deepcopy(doc))
        return  # still valid: not this test's business
    except ProfileError:
        pass
    profile = tmp_path / "fuzz.yaml"
    try:
        profile.write_text(yaml.safe_dump(doc))
    except yaml.YAMLError:
        return
    before = snapshot(tree)
    result = _run_cli(tree, profile, "apply", "--yes")
    assert result.exit_code == 2, result.output
    assert snapshot(tree) == before
