"""GPU product names, nominal memory, NVLink fabrics: the rules, then the HGX fixture host's inventory, labels, metrics.

Expected values on the fixture come from its spec (``read_summary``: the models and drivers it was
built with) and from the published names (pci.ids, NVIDIA's SKU memory), not from the code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nodeagent.discover import discover
from nodeagent.discover.gpuproducts import memory_mib, product_name
from nodeagent.discover.nvlink import derive_fabrics
from nodeagent.gpulabels import count_name
from nodeagent.host import Host
from nodeagent.inventory import NvSwitch
from nodeagent.kubenames import label_key_error, label_value_error
from nodeagent.labels import LabelConfig, compute_labels
from tests.support.exposition import Exposition
from tests.support.factories import make_gpu, make_inventory

NA = "nodeagent.io"
HGX = "hgx-h100-nvswitch"
H100_MIB = 80 * 1024  # "H100 SXM5 80GB": 80 GiB nominal


# --- product names: KubeVirt's GPU device plugin rule -------------------------------------------------------


@pytest.mark.parametrize(("pci_name", "expected"), [
    ("GH100 [H100 SXM5 80GB]", "GH100_H100_SXM5_80GB"),  # the plugin's nvidia.com/GH100_H100_SXM5_80GB
    ("GA100 [A100-SXM-64GB]", "GA100_A100SXM64GB"),  # '-' is dropped, as the plugin drops it
    ("GA107GL [A2 / A16]", "GA107GL_A2___A16"),  # '/' → '_', each space → '_'
    ("Aqua Vanjaram [Instinct MI300X]", "AQUA_VANJARAM_INSTINCT_MI300X"),
    ("TU104GL [Tesla T4]", "TU104GL_TESLA_T4"),
])
def test_product_name_follows_the_device_plugin(pci_name: str, expected: str) -> None:
    assert product_name(pci_name, "0000") == expected
    assert label_value_error(expected) is None


def test_product_name_without_a_pci_ids_name_is_the_device_id() -> None:
    assert product_name(None, "2330") == "2330"
    assert product_name("[]", "ABCD") == "abcd"  # nothing left after sanitising


def test_a_long_product_name_is_cut_to_a_label_value() -> None:
    name = product_name("X" * 40 + " / " + "Y" * 40, "1234")
    assert len(name) == 63 and label_value_error(name) is None


# --- nominal memory ---------------------------------------------------------------------------------------


def test_memory_of_known_and_unknown_skus() -> None:
    assert memory_mib("10de", "2330") == H100_MIB
    assert memory_mib("10DE", "20B2") == 80 * 1024  # A100 SXM4 80GB, ids in any case
    assert memory_mib("10de", "20b0") == 40 * 1024  # A100 SXM4 40GB: its own device id
    assert memory_mib("10de", "2336") is None  # "GH100 [H100]": several SKUs, not guessed
    assert memory_mib("10de", "2684") is None  # RTX 4090: not a datacenter SKU in the table


def test_a_subsystem_entry_wins_over_the_device_entry() -> None:
    table = {"10de:1111": 40 * 1024, "10de:1111:10de:aaaa": 80 * 1024}
    assert memory_mib("10de", "1111", "10de", "aaaa", table=table) == 80 * 1024
    assert memory_mib("10de", "1111", "10de", "bbbb", table=table) == 40 * 1024
    assert memory_mib("10de", "1111", None, None, table=table) == 40 * 1024


# --- labels of code-built inventories ---------------------------------------------------------------------


def own(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(f"{NA}/gpu-passthrough")}


def test_mixed_products_say_mixed_and_count_each() -> None:
    inv = make_inventory(gpus=[
        make_gpu("0000:17:00.0", product="GH100_H100_SXM5_80GB", memory_mib=H100_MIB),
        make_gpu("0000:18:00.0", product="GH100_H100_SXM5_80GB", memory_mib=H100_MIB),
        make_gpu("0000:19:00.0", device_id="26b9", product="AD102GL_L40S", memory_mib=48 * 1024),
        make_gpu("0000:1a:00.0", device_id="26b9", product="AD102GL_L40S", memory_mib=48 * 1024,
                 driver="nvidia", passthrough_ready=False),  # on the host driver: GFD's, not counted
    ])
    labels = own(compute_labels(inv).labels)
    assert labels == {
        f"{NA}/gpu-passthrough": "true", f"{NA}/gpu-passthrough-count": "3",
        f"{NA}/gpu-passthrough.product": "mixed",
        f"{NA}/gpu-passthrough-count.GH100_H100_SXM5_80GB": "2",
        f"{NA}/gpu-passthrough-count.AD102GL_L40S": "1",
        f"{NA}/gpu-passthrough.memory-mib": str(48 * 1024),  # the least any passthrough GPU has
        f"{NA}/gpu-passthrough.nvlink-gpus": "0",
    }


def test_memory_is_absent_when_any_passthrough_gpu_is_unknown() -> None:
    inv = make_inventory(gpus=[make_gpu("0000:17:00.0", product="A", memory_mib=H100_MIB),
                               make_gpu("0000:18:00.0", product="A", memory_mib=None)])
    labels = compute_labels(inv).labels
    assert f"{NA}/gpu-passthrough.memory-mib" not in labels
    assert labels[f"{NA}/gpu-passthrough.product"] == "A"


def test_no_passthrough_gpu_no_product_labels() -> None:
    inv = make_inventory(gpus=[make_gpu(driver="nvidia", passthrough_ready=False, product="A", memory_mib=1)])
    assert own(compute_labels(inv).labels) == {f"{NA}/gpu-passthrough": "false",
                                                f"{NA}/gpu-passthrough-count": "0"}


def test_count_keys_of_long_products_stay_valid_and_distinct() -> None:
    first, second = "A" * 50 + "_ONE", "A" * 50 + "_TWO"
    keys = {count_name(first), count_name(second)}
    assert len(keys) == 2
    for key in keys:
        assert label_key_error(f"{NA}/{key}") is None, key


def test_a_profile_cannot_set_a_per_product_count() -> None:
    from tests.test_labels import Profile

    result = compute_labels(make_inventory(), Profile(labels={f"{NA}/gpu-passthrough-count.X": "9"}))
    assert f"{NA}/gpu-passthrough-count.X" not in result.labels
    assert any("computes" in w for w in result.warnings)


# --- fabrics from code-built inventories ------------------------------------------------------------------


def switch(address: str, device_id: str = "22a3", generation: int | None = 3, driver: str | None = "nvidia",
           ready: bool = False) -> NvSwitch:
    return NvSwitch(address, device_id, "GH100 [H100 NVSwitch]", generation, driver, 5, 0, [], ready, [], "D0")


def test_sxm_gpus_share_the_fabric_of_their_nvswitch_generation() -> None:
    sxm = make_gpu("0000:18:00.0")  # 2330, H100 SXM5
    pcie = make_gpu("0000:19:00.0", device_id="2331")  # H100 PCIe: NVLink bridges only, invisible
    gpus, fabrics = derive_fabrics([sxm, pcie], [switch("0000:06:00.0"), switch("0000:07:00.0")])
    assert [g.nvlink_fabric for g in gpus] == ["nvswitch-gen3", None]
    assert [(f.id, f.gpus, f.passthrough_gpus, f.nvswitches, f.mode) for f in fabrics] == [
        ("nvswitch-gen3", ["0000:18:00.0"], ["0000:18:00.0"], ["0000:06:00.0", "0000:07:00.0"], "host")]


def test_no_fabric_without_nvswitches_of_the_gpus_generation() -> None:
    gpus, fabrics = derive_fabrics([make_gpu()], [switch("0000:06:00.0", "1af1", 2)])  # an A100's switch
    assert fabrics == [] and gpus[0].nvlink_fabric is None
    assert derive_fabrics([make_gpu()], [])[1] == []


@pytest.mark.parametrize(("switches", "mode"), [
    ([switch("a", driver="vfio-pci", ready=True), switch("b", driver="vfio-pci", ready=True)], "passthrough"),
    ([switch("a"), switch("b")], "host"),
    ([switch("a", driver="vfio-pci", ready=True), switch("b")], "mixed"),
    ([switch("a", driver=None), switch("b")], "mixed"),
])
def test_fabric_mode_is_who_drives_the_nvswitches(switches: list[NvSwitch], mode: str) -> None:
    assert derive_fabrics([make_gpu()], switches)[1][0].mode == mode


def test_nvlink_labels_only_for_a_fabric_one_model_drives() -> None:
    inv = make_inventory(gpus=[make_gpu("0000:18:00.0", product="P"), make_gpu("0000:19:00.0", product="P")])
    for switches, gpus, mode in (([switch("a"), switch("b")], "2", "host"),
                                 ([switch("a", driver="vfio-pci", ready=True), switch("b")], "0", None)):
        placed, fabrics = derive_fabrics(inv.gpus, switches)
        labels = compute_labels(replace(inv, gpus=placed, nvlink_fabrics=fabrics)).labels
        assert labels[f"{NA}/gpu-passthrough.nvlink-gpus"] == gpus
        assert labels.get(f"{NA}/gpu-passthrough.nvlink-mode") == mode


# --- the HGX fixture host ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hgx(host_trees: Callable[[str], Path]) -> tuple[Path, dict[str, Any]]:
    from fixtures.hostgen import read_summary

    root = host_trees(HGX)
    return root, read_summary(root)


def addresses(summary: dict[str, Any], device: str) -> list[str]:
    return sorted(f["address"] for f in summary["pci"] if f["vendor"] == "10de" and f["device"] == device)


def test_hgx_inventory_products_memory_and_fabric(hgx: tuple[Path, dict[str, Any]]) -> None:
    root, summary = hgx
    inv = discover(Host(str(root)))
    h100s, switches = addresses(summary, "2330"), addresses(summary, "22a3")
    assert len(h100s) == 8 and len(switches) == 4  # the spec: 8 x H100 SXM5, 4 x gen-3 NVSwitch
    nvidia = {g.address: g for g in inv.gpus if g.vendor_id == "10de"}
    assert sorted(nvidia) == h100s
    assert {(g.product, g.memory_mib, g.nvlink_fabric) for g in nvidia.values()} == {
        ("GH100_H100_SXM5_80GB", H100_MIB, "nvswitch-gen3")}
    assert [(s.address, s.generation, s.driver) for s in inv.nvswitch_devices] == [
        (a, 3, "nvidia") for a in switches]
    assert inv.nvswitches == switches
    # Each NVSwitch alone in its group (ACS on the baseboard switch's downstream ports).
    assert all([m.address for m in s.group_members] == [s.address] for s in inv.nvswitch_devices)
    [fabric] = inv.nvlink_fabrics
    assert (fabric.id, fabric.gpus, fabric.nvswitches, fabric.passthrough_gpus, fabric.mode) == (
        "nvswitch-gen3", h100s, switches, [], "host")


def test_hgx_labels_before_prep_carry_no_product(hgx: tuple[Path, dict[str, Any]]) -> None:
    root, _ = hgx
    labels = compute_labels(discover(Host(str(root))), config=LabelConfig()).labels
    assert own(labels) == {f"{NA}/gpu-passthrough": "false", f"{NA}/gpu-passthrough-count": "0"}


def test_hgx_metrics(hgx: tuple[Path, dict[str, Any]]) -> None:
    from nodeagent.metrics import MetricsOptions, build_metrics

    root, summary = hgx
    host = Host(str(root))
    inv = discover(host)
    text = build_metrics(lambda: inv, host, MetricsOptions(live=False, process=False)).text().decode()
    samples = Exposition(text).samples
    switches = addresses(summary, "22a3")
    info = {s.labels["pci_address"]: s.labels for s in samples if s.name == "nodeagent_nvswitch_info"}
    assert sorted(info) == switches
    assert {(i["device_id"], i["generation"], i["driver"]) for i in info.values()} == {("22a3", "3", "nvidia")}
    nominal = {s.labels["pci_address"]: s.value for s in samples if s.name == "nodeagent_gpu_memory_nominal_bytes"}
    assert nominal == {a: H100_MIB * 2**20 for a in addresses(summary, "2330")}
    fabric = {s.labels["pci_address"]: (s.labels["fabric"], s.labels["mode"]) for s in samples
              if s.name == "nodeagent_gpu_nvlink_fabric_info"}
    assert fabric == {a: ("nvswitch-gen3", "host") for a in addresses(summary, "2330")}
    states = {s.labels["pci_address"]: s.labels["state"] for s in samples if s.name == "nodeagent_gpu_power_state"}
    assert {states[a] for a in addresses(summary, "2330")} == {"D0"}  # on nvidia: enabled, D0


def test_the_captured_h200_host(host_trees: Callable[[str], Path]) -> None:
    """A real H200 host's capture (no pci.ids among the captured files): the product falls back to the device id
    as the device plugin's resource name does; the memory is the table's "H200 SXM 141GB"."""
    inv = discover(Host(str(host_trees("h200-firecracker"))))
    [gpu] = inv.gpus
    assert (gpu.vendor_id, gpu.device_id, gpu.driver) == ("10de", "2335", "nvidia")
    assert (gpu.product, gpu.memory_mib, gpu.nvlink_fabric) == ("2335", 141 * 1024, None)
    assert inv.nvswitch_devices == [] and inv.nvlink_fabrics == []
