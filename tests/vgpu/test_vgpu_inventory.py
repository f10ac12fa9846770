"""vGPU discovery, labels and metrics on the two vGPU fixture hosts.

Expected values are written by hand from fixtures/specs/a100-vgpu.yaml and h100-vgpu-sriov.yaml and
the type tables of fixtures/vgpu_types.yaml (time-sliced profiles are homogeneous per GPU):

* a100-vgpu: A100 #0 (17:00.0) has 20 VFs, each an mdev parent; VFs 0 and 1 (17:00.4, 17:00.5)
  hold a "GRID A100D-20C" (nvidia-696, at most 4 per GPU), so 2 more fit and no other type does.
  A100 #1 (31:00.0): 20 empty VF parents, every type creatable. The T4 (4b:00.0) is a parent itself
  with 2 "GRID T4-4Q" (nvidia-224, max 4). A100 #2 (65:00.0) is on vfio-pci: no mdev types.
* h100-vgpu-sriov: H100 #0 (18:00.0) has 32 VFs with nvidia/; VFs 0 and 1 carry type 1057
  ("NVIDIA H100XM-20C"), the 30 others list only 1057 as creatable. H100 #1 (4b:00.0): 32 free VFs
  listing the 7 types. H100 #2 has no VFs, #3 is on vfio-pci.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nodeagent.discover import discover
from nodeagent.discover.vgpu import parse_creatable
from nodeagent.host import Host
from nodeagent.inventory import Inventory, VgpuTypeId
from nodeagent.labels import compute_labels
from nodeagent.metrics.build import MetricsOptions, build_metrics
from nodeagent.profile import parse_profile
from nodeagent.vgpupool import TypePool, inventory_pools, type_pools
from tests.support.exposition import Exposition

A100_0, A100_1, T4, A100_VFIO = "0000:17:00.0", "0000:31:00.0", "0000:4b:00.0", "0000:65:00.0"
H100_0, H100_1 = "0000:18:00.0", "0000:4b:00.0"
NA = "nodeagent.io"


@pytest.fixture(scope="module")
def a100(host_trees: Callable[[str], object]) -> Inventory:
    return discover(Host(str(host_trees("a100-vgpu"))))


@pytest.fixture(scope="module")
def h100(host_trees: Callable[[str], object]) -> Inventory:
    return discover(Host(str(host_trees("h100-vgpu-sriov"))))


def test_gpu_vfs_are_not_gpus(a100: Inventory, h100: Inventory) -> None:
    assert [g.address for g in a100.gpus] == [A100_0, A100_1, T4, A100_VFIO]
    assert [g.address for g in h100.gpus] == [H100_0, H100_1, "0000:9a:00.0", "0000:cb:00.0"]
    assert [g.address for g in a100.passthrough_gpus] == [A100_VFIO]


def test_mdev_parents_types_and_instances(a100: Inventory) -> None:
    parents = {p.address: p for p in a100.vgpu.mdev_parents}
    assert len(parents) == 41  # 2 x 20 VFs + the T4; the vfio-pci A100 registers none
    vf0 = parents["0000:17:00.4"]
    assert (vf0.gpu, vf0.vf, vf0.driver) == (A100_0, True, "nvidia")
    assert [t.type_id for t in vf0.types] == [f"nvidia-{n}" for n in range(692, 699)]
    held = next(t for t in vf0.types if t.type_id == "nvidia-696")
    assert (held.name, held.device_api, held.available_instances) == ("GRID A100D-20C", "vfio-pci", 0)
    assert held.instances == ["6b1f0c4e-8f4a-4a55-9d3c-2f8f2b6d0a01"]
    assert held.description is not None and "max_instance=4" in held.description
    free_vf = {t.type_id: t.available_instances for t in parents["0000:17:00.6"].types}
    assert free_vf == {"nvidia-692": 0, "nvidia-693": 0, "nvidia-694": 0, "nvidia-695": 0, "nvidia-696": 1,
                       "nvidia-697": 0, "nvidia-698": 0}
    t4 = parents[T4]
    assert (t4.gpu, t4.vf) == (T4, False)
    assert {t.type_id: t.available_instances for t in t4.types} == {
        "nvidia-222": 0, "nvidia-223": 0, "nvidia-224": 2, "nvidia-225": 0, "nvidia-226": 0}
    mdevs = {m.uuid: (m.parent, m.type_id) for m in a100.vgpu.mdevs}
    assert mdevs == {
        "6b1f0c4e-8f4a-4a55-9d3c-2f8f2b6d0a01": ("0000:17:00.4", "nvidia-696"),
        "6b1f0c4e-8f4a-4a55-9d3c-2f8f2b6d0a02": ("0000:17:00.5", "nvidia-696"),
        "0f3e7d1a-2c4b-4e8f-a1b2-c3d4e5f60701": (T4, "nvidia-224"),
        "0f3e7d1a-2c4b-4e8f-a1b2-c3d4e5f60702": (T4, "nvidia-224"),
    }
    assert all(m.iommu_group is not None for m in a100.vgpu.mdevs)
    assert a100.vgpu.sriov_vfs == []


def test_sriov_vgpu_vfs(h100: Inventory) -> None:
    vfs = h100.vgpu.sriov_vfs
    assert len(vfs) == 64 and {vf.gpu for vf in vfs} == {H100_0, H100_1}
    first = vfs[0]
    assert (first.address, first.index, first.current_type, first.current_name) == \
        ("0000:18:00.4", 0, 1057, "NVIDIA H100XM-20C")
    assert first.creatable == []
    third = vfs[2]
    assert (third.current_type, third.creatable) == (0, [VgpuTypeId(1057, "NVIDIA H100XM-20C")])
    other = next(vf for vf in vfs if vf.gpu == H100_1)
    assert [t.id for t in other.creatable] == list(range(1053, 1060))
    assert h100.vgpu.mdev_parents == [] and h100.vgpu.mdevs == []


def test_creatable_types_parse_the_drivers_forms() -> None:
    text = "ID    : vGPU Name\n1414  : NVIDIA H200X-1-18C\n1428 : NVIDIA H200X-141C\n\ngarbage\n"
    assert parse_creatable(text) == [VgpuTypeId(1414, "NVIDIA H200X-1-18C"), VgpuTypeId(1428, "NVIDIA H200X-141C")]
    assert parse_creatable(None) == [] and parse_creatable("ID    : vGPU Name\n") == []


def test_pools(a100: Inventory, h100: Inventory) -> None:
    pools = type_pools(a100.vgpu)
    assert [p for p in pools if p.gpu == A100_0] == [
        TypePool(A100_0, "mdev", "nvidia-696", "GRID A100D-20C", used=2, available=2)]  # 18 free VFs, room for 2
    assert [(p.type_id, p.available) for p in pools if p.gpu == A100_1] == [
        ("nvidia-692", 20), ("nvidia-693", 10), ("nvidia-694", 8), ("nvidia-695", 5), ("nvidia-696", 4),
        ("nvidia-697", 2), ("nvidia-698", 1)]
    assert [p for p in pools if p.gpu == T4] == [TypePool(T4, "mdev", "nvidia-224", "GRID T4-4Q", 2, 2)]
    # sysfs alone: 30 free VFs list 1057, each "one more fits"
    assert [p for p in type_pools(h100.vgpu) if p.gpu == H100_0] == [
        TypePool(H100_0, "sriov", "1057", "NVIDIA H100XM-20C", 2, 30)]
    # with the H100 SXM5's nominal 80 GiB (Gpu.memory_mib): 4 x 20C fit, 2 exist
    h = inventory_pools(h100)
    assert [p for p in h if p.gpu == H100_0] == [TypePool(H100_0, "sriov", "1057", "NVIDIA H100XM-20C", 2, 2)]
    assert [(p.type_id, p.available) for p in h if p.gpu == H100_1] == [
        ("1053", 20), ("1054", 10), ("1055", 8), ("1056", 5), ("1057", 4), ("1058", 2), ("1059", 1)]


def test_labels(a100: Inventory, h100: Inventory) -> None:
    a = {k: v for k, v in compute_labels(a100).labels.items() if k.startswith(f"{NA}/vgpu")}
    assert a == {f"{NA}/vgpu": "true", f"{NA}/vgpu-gpus": "3", f"{NA}/vgpu-instances": "4",
                 f"{NA}/vgpu-available": "4",  # 2 more A100D-20C on A100 #0, 2 more T4-4Q
                 f"{NA}/vgpu.GRID_A100D-20C": "2", f"{NA}/vgpu.GRID_T4-4Q": "2"}
    h = {k: v for k, v in compute_labels(h100).labels.items() if k.startswith(f"{NA}/vgpu")}
    assert h == {f"{NA}/vgpu": "true", f"{NA}/vgpu-gpus": "2", f"{NA}/vgpu-instances": "2",
                 f"{NA}/vgpu-available": "2",  # 80 GiB holds 4 x 20C, 2 exist (30 free VFs list it)
                 f"{NA}/vgpu.NVIDIA_H100XM-20C": "2"}


def test_a_profile_cannot_set_a_vgpu_label(a100: Inventory) -> None:
    doc = {"apiVersion": "nodeagent.io/v1alpha1", "kind": "NodeProfile", "metadata": {"name": "p"},
           "spec": {"labels": {f"{NA}/vgpu.GRID_T4-1Q": "9", f"{NA}/vgpu.GRID_A100D-20C": "7"}}}
    result = compute_labels(a100, parse_profile(doc))
    assert f"{NA}/vgpu.GRID_T4-1Q" not in result.labels
    assert result.labels[f"{NA}/vgpu.GRID_A100D-20C"] == "2"
    assert len(result.warnings) == 2


def test_metrics(a100: Inventory, h100: Inventory) -> None:
    def exposition(inv: Inventory) -> Exposition:
        metrics = build_metrics(lambda: inv, Host(inv.root), MetricsOptions(live=False, process=False))
        return Exposition(metrics.text().decode())

    a = exposition(a100)
    assert a.value("nodeagent_vgpu_instances", pci_address=A100_0, type="nvidia-696", state="used") == 2
    assert a.value("nodeagent_vgpu_instances", pci_address=A100_0, type="nvidia-696", state="available") == 2
    assert a.get("nodeagent_vgpu_instances", pci_address=A100_0, type="nvidia-692") == []  # neither used nor room
    t4 = a.get("nodeagent_vgpu_instances", pci_address=T4, state="used")
    assert [(s.labels["name"], s.labels["pci_bus_id"], s.labels["mode"], s.value) for s in t4] == [
        ("GRID T4-4Q", "00000000:4B:00.0", "mdev", 2)]
    assert a.get("nodeagent_vgpu_instances", pci_address=A100_VFIO) == []
    assert a.get("nodeagent_vgpu_vfs") == []
    h = exposition(h100)
    assert h.value("nodeagent_vgpu_instances", pci_address=H100_0, type="1057", state="used", mode="sriov") == 2
    assert h.value("nodeagent_vgpu_instances", pci_address=H100_0, type="1057", state="available") == 2
    assert h.value("nodeagent_vgpu_vfs", pci_address=H100_0, state="assigned") == 2
    assert h.value("nodeagent_vgpu_vfs", pci_address=H100_0, state="free") == 30
    assert h.value("nodeagent_vgpu_vfs", pci_address=H100_1, state="free") == 32


def test_inspect_summary_has_a_vgpu_line_only_where_gpus_offer_vgpu(a100: Inventory, h100: Inventory,
                                                                      host_trees: Callable[[str], object]) -> None:
    from nodeagent.terminal import render_summary

    def vgpu_line(inv: Inventory) -> str:
        lines = render_summary(inv)
        start = next((i for i, line in enumerate(lines) if line.startswith("  vGPU ")), None)
        if start is None:
            return ""
        text = [lines[start][13:]]
        for line in lines[start + 1:]:
            if not line.startswith(" " * 13):
                break
            text.append(line[13:])
        return " ".join(text)

    assert vgpu_line(a100) == ("3 GPUs offer vGPU types · 4 instances: 2 GRID A100D-20C, 2 GRID T4-4Q · 4 more of "
                               "those types")
    assert vgpu_line(h100) == ("2 GPUs offer vGPU types · 2 instances: 2 NVIDIA H100XM-20C · 2 more of those types "
                               "· 64 vGPU VFs")
    assert vgpu_line(discover(Host(str(host_trees("intel-2s-8gpu"))))) == ""
