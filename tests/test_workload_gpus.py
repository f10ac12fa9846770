"""The ``gpus`` requirement's product, memory and NVLink keys: parsing, sized shortfalls, fixture hosts.

Fixture facts (from ``fixtures/specs``): intel-2s-8gpu has 4 H100 SXM5 on vfio-pci and its 4 gen-3
NVSwitches on nvidia (a host-driven fabric); amd-nps4-consumer one RTX 4090 on vfio-pci and no NVSwitch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inventory import NvlinkFabric
from nodeagent.workloads import WorkloadClassesError, default_table
from nodeagent.workloads.gpus import GpusNeeded, describe_gpus, gpus_shortfalls, parse_gpus
from nodeagent.workloads.model import RequirementError
from tests.support.factories import make_gpu, make_inventory

H100 = "GH100_H100_SXM5_80GB"


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"passthrough": 2, "product": ""}, ".product", "is not a product name"),
    ({"passthrough": 2, "product": ["A", "bad value!"]}, ".product[1]", "label value"),
    ({"passthrough": 2, "product": []}, ".product", "is not a product name"),
    ({"passthrough": 2, "minMemoryMiB": "80Gi"}, ".minMemoryMiB", "is not a memory size in MiB"),
    ({"passthrough": 2, "minMemoryMiB": 0}, ".minMemoryMiB", "from 1 to"),
    ({"passthrough": 2, "nvlink": "yes"}, ".nvlink", "is not a boolean"),
    ({"nvlink": True}, ".passthrough", "is not a number of GPUs"),
    ({"passthrough": 2, "nvswitch": True}, ".nvswitch", "unknown field"),
])
def test_bad_values_name_the_field_and_form(raw: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(RequirementError) as caught:
        parse_gpus(raw)
    assert caught.value.field == field and words in caught.value.message


def overlay(classes: dict[str, Any]) -> Any:
    return default_table().overlay(classes, "classes", source="test")


def test_a_bad_key_in_a_class_table_is_refused_with_its_path() -> None:
    with pytest.raises(WorkloadClassesError) as caught:
        overlay({"ai-training": {"requires": {"gpus": {"passthrough": 2, "nvlink": 1}}}})
    assert any("ai-training.requires.gpus.nvlink" in e and "boolean" in e for e in caught.value.errors), \
        caught.value.errors


def test_parse_and_describe() -> None:
    need = parse_gpus({"passthrough": 2, "product": H100, "minMemoryMiB": 81920, "nvlink": True})
    assert need == GpusNeeded(2, (H100,), 81920, True)
    assert describe_gpus(need) == f"≥ 2 passthrough-ready GPUs (product {H100}, ≥ 81920 MiB), NVLink-connected"
    assert describe_gpus(parse_gpus({"passthrough": 1})) == "≥ 1 passthrough-ready GPU"


def test_product_and_memory_narrow_which_gpus_count() -> None:
    inv = make_inventory(gpus=[make_gpu("0000:17:00.0", product=H100, memory_mib=81920),
                               make_gpu("0000:18:00.0", product="AD102GL_L40S", memory_mib=49152),
                               make_gpu("0000:19:00.0", product="X", memory_mib=None)])
    assert gpus_shortfalls(inv, parse_gpus({"passthrough": 3})) == []
    assert gpus_shortfalls(inv, parse_gpus({"passthrough": 2, "product": H100})) == [
        f"needs 2 passthrough-ready GPUs (product {H100}), has 1"]
    assert gpus_shortfalls(inv, parse_gpus({"passthrough": 2, "product": [H100, "AD102GL_L40S"]})) == []
    # Unknown memory never counts as enough.
    assert gpus_shortfalls(inv, parse_gpus({"passthrough": 2, "minMemoryMiB": 40000})) == []
    assert gpus_shortfalls(inv, parse_gpus({"passthrough": 3, "minMemoryMiB": 40000})) == [
        "needs 3 passthrough-ready GPUs (≥ 40000 MiB), has 2"]


def test_nvlink_needs_the_gpus_on_one_usable_fabric() -> None:
    gpus = [make_gpu(f"0000:1{i}:00.0", product=H100, nvlink_fabric="nvswitch-gen3") for i in range(3)]
    fabric = NvlinkFabric("nvswitch-gen3", 3, ["0000:06:00.0"], [g.address for g in gpus],
                          [g.address for g in gpus], "host")
    inv = make_inventory(gpus=gpus, nvlink_fabrics=[fabric])
    need = parse_gpus({"passthrough": 3, "nvlink": True})
    assert gpus_shortfalls(inv, need) == []
    mixed = replace(inv, nvlink_fabrics=[replace(fabric, mode="mixed")])
    assert gpus_shortfalls(mixed, need) == [
        "needs 3 passthrough-ready GPUs on one NVLink fabric, has 0 (nvswitch-gen3 has NVSwitches mixed: "
        "neither all on the host driver nor all passed through)"]
    off_fabric = replace(inv, gpus=[*gpus[:2], replace(gpus[2], nvlink_fabric=None)])
    assert gpus_shortfalls(off_fabric, need) == [
        "needs 3 passthrough-ready GPUs on one NVLink fabric, has 2 (on nvswitch-gen3)"]


@pytest.fixture(scope="module")
def inventories(host_trees: Callable[[str], Path]) -> dict[str, Any]:
    return {name: discover(Host(str(host_trees(name)))) for name in ("intel-2s-8gpu", "amd-nps4-consumer")}


def test_nvlink_on_the_fixture_hosts(inventories: dict[str, Any]) -> None:
    table = overlay({"nvlink-training": {"extends": "ai-training", "requires": {
        "gpus": {"passthrough": 2, "product": H100, "minMemoryMiB": 81920, "nvlink": True}}}})
    hgx, consumer = inventories["intel-2s-8gpu"], inventories["amd-nps4-consumer"]
    # intel-2s-8gpu: 4 H100 passthrough-ready, all on the host-driven gen-3 fabric → the GPU part is met
    # (the class may still lack 2Mi pages: only the gpus reason is looked at here).
    assert not [r for r in table.readiness(hgx)["nvlink-training"].reasons if "GPU" in r]
    eight = overlay({"x": {"requires": {"gpus": {"passthrough": 8, "nvlink": True}}}})
    assert eight.readiness(hgx)["x"].reasons == ["needs 8 passthrough-ready GPUs, has 4"]
    one = overlay({"x": {"requires": {"gpus": {"passthrough": 1, "nvlink": True}}}})
    assert one.readiness(consumer)["x"].reasons == [
        "needs 1 passthrough-ready GPU on one NVLink fabric, has 0 (no NVSwitch fabric the host can see)"]


def test_the_default_ai_training_class_does_not_require_nvlink() -> None:
    """NVLink bridges between PCIe cards and 4-GPU boards are invisible to the host: requiring NVLink by default
    would mark such nodes not ready; operators on NVSwitch fleets opt in (docs/workloads)."""
    gpus = default_table()["ai-training"].requirement("gpus")
    assert gpus is not None and gpus.value.nvlink is False


# --- through the CLI, with a WorkloadClasses file -----------------------------------------------------------

NVLINK_CLASSES = f"""apiVersion: nodeagent.io/v1alpha1
kind: WorkloadClasses
classes:
  nvlink-2:
    requires: {{kvm: true, gpus: {{passthrough: 2, nvlink: true, product: {H100}, minMemoryMiB: 81920}}}}
  nvlink-8:
    extends: nvlink-2
    requires: {{gpus: {{passthrough: 8, nvlink: true}}}}
"""


def run(*args: str) -> Any:
    from click.testing import CliRunner

    from nodeagent.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_check_for_nvlink_classes(host_trees: Callable[[str], Path], tmp_path: Path) -> None:
    import json

    classes = tmp_path / "classes.yaml"
    classes.write_text(NVLINK_CLASSES)
    root = str(host_trees("intel-2s-8gpu"))  # 4 H100 on vfio-pci, their gen-3 fabric driven by the host
    ok = run("--root", root, "check", "--workload-classes", str(classes), "--for", "nvlink-2", "-o", "json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["readiness"]["nvlink-2"]["ready"] is True
    short = run("--root", root, "check", "--workload-classes", str(classes), "--for", "nvlink-8")
    assert short.exit_code == 1 and "needs 8 passthrough-ready GPUs, has 4" in short.output
    consumer = run("--root", str(host_trees("amd-nps4-consumer")), "check", "--workload-classes", str(classes),
                   "--for", "nvlink-2")
    assert consumer.exit_code == 1
    assert f"needs 2 passthrough-ready GPUs (product {H100}, ≥ 81920 MiB), has 0" in consumer.output
