"""spec.gpu.vgpu: validation, plan, apply, revert and refusals on the two vGPU fixture hosts.

The trees are private copies (``fresh_host_tree``); :class:`tests.support.vgpu_kernel.VgpuKernel`
stands in for the kernel at each write (an mdev ``create``/``remove``, a VF's ``current_vgpu_type``),
as the KernelEmulator does for PCI binds. Expected values come from the specs (see
tests/vgpu/test_vgpu_inventory.py): A100 #0 (17:00.0) holds 2 "GRID A100D-20C" (max 4) on VFs 0-1,
A100 #1 (31:00.0) is empty, the T4 (4b:00.0) holds 2 "GRID T4-4Q" (max 4), A100 #2 (65:00.0) is on
vfio-pci; on the H100 host, VFs 0-1 of 18:00.0 carry type 1057 (H100XM-20C, max 4), 4b:00.0's 32 VFs
are free, 9a:00.0 has no VFs.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.discover import discover
from nodeagent.host import Host, WriteRecord
from nodeagent.labels import compute_labels
from nodeagent.prep.apply import execute, revert
from nodeagent.profile import ProfileError, parse_profile_text
from nodeagent.vgpupool import type_pools
from tests.prep.helpers import applied, journal, planned, profile_doc
from tests.support.trees import byte_snapshot
from tests.support.vgpu_kernel import VgpuKernel

A100_0, A100_1, T4, A100_VFIO = "0000:17:00.0", "0000:31:00.0", "0000:4b:00.0", "0000:65:00.0"
H100_0, H100_1, H100_NOVF = "0000:18:00.0", "0000:4b:00.0", "0000:9a:00.0"
OTHERS = {"6b1f0c4e-8f4a-4a55-9d3c-2f8f2b6d0a01", "6b1f0c4e-8f4a-4a55-9d3c-2f8f2b6d0a02",
          "0f3e7d1a-2c4b-4e8f-a1b2-c3d4e5f60701", "0f3e7d1a-2c4b-4e8f-a1b2-c3d4e5f60702"}


def snapshot(root: Path) -> dict[str, bytes | str]:
    """The host state vGPU prep may touch: devices (links and attributes), the mdev bus, nodeagent's files."""
    return byte_snapshot(root, ("sys/devices", "sys/bus/mdev", "sys/class/mdev_bus", "var", "etc"))


def vgpu(create: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"gpu": {"vgpu": {"create": create, **extra}}}


@pytest.fixture
def host(fresh_host_tree: Callable[[str], Path]) -> Callable[[str], tuple[Host, VgpuKernel, Path]]:
    def make(name: str) -> tuple[Host, VgpuKernel, Path]:
        root = fresh_host_tree(name)
        kernel = VgpuKernel(root)
        return kernel.install(Host(str(root))), kernel, root
    return make


def pools(host: Host) -> dict[tuple[str, str], tuple[int, int]]:
    return {(p.gpu, p.type_id): (p.used, p.available) for p in type_pools(discover(host).vgpu)}


# --- the profile ------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    (vgpu([{"type": "", "count": 1}]), "spec.gpu.vgpu.create[0].type: '' is not a vGPU type"),
    (vgpu([{"type": "GRID T4-4Q", "count": 0}]), "spec.gpu.vgpu.create[0].count: 0 is not an integer from 1 to 64"),
    (vgpu([{"type": "GRID T4-4Q"}]), "spec.gpu.vgpu.create[0].count: required field is missing"),
    (vgpu([{"type": "GRID T4-4Q", "count": 1, "gpu": []}]), "spec.gpu.vgpu.create[0].gpu: unknown field"),
    (vgpu([{"type": "GRID T4-4Q", "count": 1, "gpus": []}]), "spec.gpu.vgpu.create[0].gpus: expected a non-empty"),
    (vgpu([{"type": "GRID T4-4Q", "count": 1, "gpus": [{"device": "1eb8"}]}]),
     "spec.gpu.vgpu.create[0].gpus[0].vendor: required with device"),
    (vgpu([{"type": "GRID T4-4Q", "count": 1, "gpus": [{"address": "4b:00"}]}]),
     "spec.gpu.vgpu.create[0].gpus[0].address: '4b:00' is not a PCI address"),
    (vgpu([{"type": "GRID T4-4Q", "count": 1}, {"type": "GRID_T4-4Q", "count": 2, "gpus": [{"address": "4b:00.0"}]}]),
     "spec.gpu.vgpu.create[1].type: 'GRID_T4-4Q' is given twice (also create[0]) and not both with gpus"),
    (vgpu([], maxPerGpu=100), "spec.gpu.vgpu.maxPerGpu: 100 is not an integer from 1 to 64"),
    ({"gpu": {"vgpu": {"create": {"type": "x"}}}}, "spec.gpu.vgpu.create: expected a list"),
    ({"gpu": {"vgpu": {"creat": []}}}, "spec.gpu.vgpu.creat: unknown field (allowed here: create, maxPerGpu)"),
])
def test_bad_input_names_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profile_text(yaml.safe_dump(profile_doc(spec)))
    assert any(e.startswith(message) for e in err.value.errors), err.value.errors


def test_the_profile_reads_back() -> None:
    profile = parse_profile_text(yaml.safe_dump(profile_doc(vgpu(
        [{"type": " GRID A100D-20C ", "count": 4, "gpus": [{"vendor": "0x10DE", "device": "20b5"}]}], maxPerGpu=6))))
    assert profile.gpu_vgpu is not None and profile.gpu_vgpu.max_per_gpu == 6
    (entry,) = profile.gpu_vgpu.create
    assert (entry.type, entry.count, entry.gpus[0].vendor, entry.gpus[0].device) == ("GRID A100D-20C", 4, "10de",
                                                                                     "20b5")
    assert parse_profile_text(yaml.safe_dump(profile_doc(vgpu([])))).gpu_vgpu.max_per_gpu == 8  # type: ignore[union-attr]


# --- mediated devices: a100-vgpu --------------------------------------------------------------


def test_plan_creates_what_is_missing_per_gpu(host: Callable[..., Any]) -> None:
    h, _, _ = host("a100-vgpu")
    _, plan = planned(h, vgpu([{"type": "GRID A100D-20C", "count": 4}, {"type": "GRID_T4-4Q", "count": 3}]))
    assert not plan.refusals
    made = [(c.detail["parent"], c.detail["type"], c.detail["gpu"]) for c in plan.changes]
    assert made == [  # A100 #0: 2 exist, 2 more on its first free VFs; A100 #1: 4; T4: 1 more on itself
        ("0000:17:00.6", "nvidia-696", A100_0), ("0000:17:00.7", "nvidia-696", A100_0),
        ("0000:31:00.4", "nvidia-696", A100_1), ("0000:31:00.5", "nvidia-696", A100_1),
        ("0000:31:00.6", "nvidia-696", A100_1), ("0000:31:00.7", "nvidia-696", A100_1),
        (T4, "nvidia-224", T4)]
    assert all(c.action == "mdev" and c.current == "absent" for c in plan.changes)
    assert len({c.detail["uuid"] for c in plan.changes}) == 7
    assert any("mediatedDevicesConfiguration must not" in n for n in plan.notes)
    _, again = planned(h, vgpu([{"type": "GRID A100D-20C", "count": 4}, {"type": "GRID_T4-4Q", "count": 3}]))
    assert [c.detail["uuid"] for c in again.changes] == [c.detail["uuid"] for c in plan.changes]  # reproducible


def test_apply_then_revert_mdevs(host: Callable[..., Any]) -> None:
    h, _kernel, root = host("a100-vgpu")
    before = snapshot(root)
    result = applied(h, vgpu([{"type": "nvidia-696", "count": 4, "gpus": [{"address": "31:00.0"}]},
                              {"type": "GRID T4-4Q", "count": 4}]))
    assert result.exit_code == 0, result.failure
    assert pools(h)[(A100_1, "nvidia-696")] == (4, 0)
    assert pools(h)[(T4, "nvidia-224")] == (4, 0)
    labels = compute_labels(discover(h)).labels
    assert labels["nodeagent.io/vgpu.GRID_A100D-20C"] == "6" and labels["nodeagent.io/vgpu.GRID_T4-4Q"] == "4"
    entries = journal(root)["entries"]  # type: ignore[index]
    assert [e["action"] for e in entries] == ["mdev"] * 6
    assert {e["detail"]["parent"] for e in entries} == {"0000:31:00.4", "0000:31:00.5", "0000:31:00.6",
                                                       "0000:31:00.7", T4}
    assert all(e["old"] is None for e in entries)
    # applying again changes nothing: the instances exist
    again = applied(h, vgpu([{"type": "nvidia-696", "count": 4, "gpus": [{"address": "31:00.0"}]},
                             {"type": "GRID T4-4Q", "count": 4}]))
    assert again.exit_code == 0 and again.plan.empty
    reverted = revert(h)
    assert reverted.exit_code == 0, reverted.failed
    assert len(reverted.restored) == 6
    assert set(os.listdir(root / "sys/bus/mdev/devices")) == OTHERS  # those nodeagent did not make stay
    assert snapshot(root) == before  # available_instances, links, no journal: byte for byte


def test_refusals(host: Callable[..., Any]) -> None:
    h, kernel, root = host("a100-vgpu")
    _, plan = planned(h, vgpu([
        {"type": "GRID A100D-20C", "count": 5, "gpus": [{"address": "17:00.0"}]},  # 2 exist, room for 2 (max 4)
        {"type": "GRID A100D-10C", "count": 2, "gpus": [{"address": "4b:00.0"}]},  # a T4 offers no A100 type
        {"type": "GRID A100D-8C", "count": 1, "gpus": [{"address": "65:00.0"}]},  # on vfio-pci: passthrough
        {"type": "GRID A100D-4C", "count": 1, "gpus": [{"address": "17:00.0"}]},  # A100 #0 holds 20C
        {"type": "GRID T4-16Q", "count": 1},  # no GPU offers it now (the T4 holds 4Q)
        {"type": "nvidia-696", "count": 1, "gpus": [{"vendor": "10de", "device": "20b5"}]},  # 17:00.0 twice
    ], maxPerGpu=8))
    reasons = {r.target: (r.reason, r.forceable) for r in plan.refusals}
    assert reasons[f"{A100_0} GRID A100D-20C"] == (
        "needs 3 more GRID A100D-20C instances, the kernel can create 2 (available_instances)", False)
    assert reasons[f"{T4} GRID A100D-10C"][0].startswith("GRID A100D-10C cannot be created on this GPU now: it "
                                                          "holds 2 GRID T4-4Q (time-sliced vGPU types do not mix")
    assert reasons[f"{A100_VFIO} GRID A100D-8C"][0].startswith("the GPU is passed through whole (bound to vfio-pci)")
    assert "it holds 2 GRID A100D-20C" in reasons[f"{A100_0} GRID A100D-4C"][0]
    assert reasons[f"{A100_0} nvidia-696"][0] == ("spec.gpu.vgpu.create[0] and spec.gpu.vgpu.create[5] both select "
                                                   "this GPU for this type: give its count once")
    assert reasons[f"{A100_VFIO} nvidia-696"][0].startswith("the GPU is passed through whole")
    assert [s.target for s in plan.skipped] == ["GRID T4-16Q"]
    # create[5] on A100 #1 (the other 20b5 selected): 1 instance, the only change
    assert [(c.detail["gpu"], c.detail["type"]) for c in plan.changes] == [(A100_1, "nvidia-696")]
    result = applied(h, vgpu([{"type": "GRID A100D-20C", "count": 5, "gpus": [{"address": "17:00.0"}]}]))
    assert result.exit_code == 2 and kernel.writes == [] and journal(root) is None  # nothing written


def test_a_gpu_the_profile_passes_through_is_never_split(host: Callable[..., Any]) -> None:
    h, _, _ = host("a100-vgpu")
    spec = vgpu([{"type": "GRID A100D-20C", "count": 4, "gpus": [{"address": "31:00.0"}]}])
    spec["gpu"]["passthrough"] = [{"address": "31:00.0"}]
    _, plan = planned(h, spec)
    assert [r.reason for r in plan.refusals if r.subsystem == "vgpu"] == [
        "the GPU is passed through whole (selected by spec.gpu.passthrough): a GPU is either passed through or "
        "shared as vGPU, never both"]
    assert not [c for c in plan.changes if c.subsystem == "vgpu"]


def test_the_ratio_cap_is_a_refusal_force_overrides(host: Callable[..., Any]) -> None:
    h, _, _root = host("a100-vgpu")
    spec = vgpu([{"type": "GRID A100D-10C", "count": 8, "gpus": [{"address": "31:00.0"}]}], maxPerGpu=4)
    _, plan = planned(h, spec)
    (refusal,) = plan.refusals
    assert refusal.forceable and refusal.reason == (
        "the GPU would hold 8 vGPU instances (0 exist, 8 more of GRID A100D-10C), more than spec.gpu.vgpu.maxPerGpu 4 "
        "(the ratio cap; --force overrides)")
    assert applied(h, spec).exit_code == 2
    forced = applied(h, spec, force=True)
    assert forced.exit_code == 0 and [r.target for r in forced.plan.forced] == [f"{A100_1} GRID A100D-10C"]
    assert pools(h)[(A100_1, "nvidia-694")] == (8, 0)


def test_a_failed_create_rolls_back(host: Callable[..., Any]) -> None:
    h, _kernel, root = host("a100-vgpu")
    before = snapshot(root)
    calls = []

    def fail_third(_: Host, record: WriteRecord) -> bool:
        if record.path.endswith("/create"):
            calls.append(record.path)
            if len(calls) == 3:
                raise OSError(errno.EIO, os.strerror(errno.EIO), record.path)
        return False

    h.interceptors.append(fail_third)
    result = applied(h, vgpu([{"type": "GRID A100D-20C", "count": 4, "gpus": [{"address": "31:00.0"}]}]))
    assert result.exit_code == 1 and "EIO" in (result.failure or "")
    assert [o.status for o in result.outcomes].count("restored") == 3  # the two made and the one that failed
    assert snapshot(root) == before


def test_revert_keeps_an_instance_a_vm_holds(host: Callable[..., Any]) -> None:
    h, kernel, root = host("a100-vgpu")
    assert applied(h, vgpu([{"type": "GRID T4-4Q", "count": 3}])).exit_code == 0
    (made,) = [e["detail"]["uuid"] for e in journal(root)["entries"]]  # type: ignore[index]
    kernel.busy.add(made)
    result = revert(h)
    assert result.exit_code == 1 and "EBUSY" in result.failed[0]
    assert journal(root)["entries"][0]["detail"]["uuid"] == made  # type: ignore[index]
    kernel.busy.clear()
    assert revert(h).exit_code == 0 and not (root / f"sys/bus/mdev/devices/{made}").exists()


def test_a_journal_entry_naming_no_uuid_is_never_restored(host: Callable[..., Any]) -> None:
    h, kernel, root = host("a100-vgpu")
    path = root / "var/lib/nodeagent/journal.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"key": "mdev:x", "subsystem": "vgpu", "target": "mdev x", "action": "mdev", "path": None, "old": None,
             "detail": {"uuid": "../../../../kernel/mm/ksm"}}
    path.write_text(json.dumps({"version": 1, "entries": [entry]}))
    result = revert(h)
    assert result.exit_code == 1 and "not a mediated device's UUID" in result.failed[0]
    assert kernel.writes == []


# --- SR-IOV vGPU: h100-vgpu-sriov -------------------------------------------------------------


def test_sriov_plan_apply_revert(host: Callable[..., Any]) -> None:
    h, _kernel, root = host("h100-vgpu-sriov")
    before = snapshot(root)
    spec = vgpu([{"type": "NVIDIA H100XM-20C", "count": 4, "gpus": [{"address": "18:00.0"}]},
                 {"type": "1058", "count": 2, "gpus": [{"address": "4b:00.0"}]}])
    _, plan = planned(h, spec)
    assert [(c.target, c.current, c.desired, c.action) for c in plan.changes] == [
        ("0000:18:00.6", "0", "1057", "attr"), ("0000:18:00.7", "0", "1057", "attr"),
        ("0000:4b:00.4", "0", "1058", "attr"), ("0000:4b:00.5", "0", "1058", "attr")]
    assert plan.changes[0].path == "/sys/bus/pci/devices/0000:18:00.6/nvidia/current_vgpu_type"
    result = applied(h, spec)
    assert result.exit_code == 0, result.failure
    after = pools(h)
    assert after[(H100_0, "1057")] == (4, 0)  # GPU 0 full: no VF lists 1057 any more
    assert after[(H100_1, "1058")] == (2, 0)  # 40C holds 2 per GPU
    assert (root / "sys/bus/pci/devices/0000:4b:00.5/nvidia/current_vgpu_type").read_text() == "1058\n"
    assert [e["old"] for e in journal(root)["entries"]] == ["0"] * 4  # type: ignore[index]
    assert revert(h).exit_code == 0
    assert snapshot(root) == before


def test_sriov_refusals(host: Callable[..., Any]) -> None:
    h, _kernel, _ = host("h100-vgpu-sriov")
    _, plan = planned(h, vgpu([
        {"type": "1057", "count": 5, "gpus": [{"address": "18:00.0"}]},  # more than maxPerGpu
        {"type": "1053", "count": 1, "gpus": [{"address": "9a:00.0"}]},  # no VFs: no vGPU
        {"type": "1053", "count": 1, "gpus": [{"address": "cb:00.0"}]},  # vfio-pci
        {"type": "NVIDIA H100XM-40C", "count": 3, "gpus": [{"address": "4b:00.0"}]},  # 80 GiB holds 2
    ], maxPerGpu=4))
    reasons = {r.target: r.reason for r in plan.refusals}
    assert reasons[f"{H100_0} 1057"].startswith("the GPU would hold 5 vGPU instances (2 exist, 3 more of NVIDIA "
                                                 "H100XM-20C), more than spec.gpu.vgpu.maxPerGpu 4")
    assert reasons[f"{H100_NOVF} 1053"].startswith("the GPU offers no vGPU types (driver nvidia")
    assert reasons["0000:cb:00.0 1053"].startswith("the GPU is passed through whole (bound to vfio-pci)")
    assert reasons[f"{H100_1} NVIDIA H100XM-40C"] == (
        "needs 3 more NVIDIA H100XM-40C instances, the kernel can create 2 (free VFs listing it in "
        "creatable_vgpu_types, within the GPU's memory)")


def test_the_driver_refusing_a_type_rolls_back(host: Callable[..., Any]) -> None:
    """The creatable lists are an upper bound: the driver may refuse a write; apply verifies and rolls back."""
    h, kernel, root = host("h100-vgpu-sriov")
    before = snapshot(root)
    spec = vgpu([{"type": "1057", "count": 4, "gpus": [{"address": "18:00.0"}]}])
    ctx, plan = planned(h, spec)
    # another writer takes one of the GPU's two free 20C slots (on a VF the plan does not use) meanwhile
    other = "/sys/bus/pci/devices/0000:18:01.0/nvidia/current_vgpu_type"
    kernel.assign(other, "1057")
    result = execute(plan, ctx, h, sleep=lambda _: None)
    assert result.exit_code == 1 and "EINVAL" in (result.failure or "")  # 18:00.7 no longer lists 1057
    assert [o.status for o in result.outcomes] == ["applied", "failed", "restored", "restored"]
    kernel.assign(other, "0")
    assert snapshot(root) == before
