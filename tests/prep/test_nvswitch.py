"""NVSwitches to vfio-pci on the HGX fixture host (spec.gpu.nvswitch: passthrough): plan, apply, exact revert, refusals.

The tree is ``fixtures/specs/hgx-h100-nvswitch.yaml`` (8 x H100 SXM5 and 4 gen-3 NVSwitches, all on
nvidia), copied per test; ``KernelEmulator`` moves the ``driver`` links as the kernel would. The
expected addresses come from the tree's build summary, never from the code under test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.labels import compute_labels
from nodeagent.prep.apply import revert
from tests.prep.helpers import applied, planned
from tests.support.kernel import KernelEmulator
from tests.support.trees import byte_snapshot as snapshot

HGX = "hgx-h100-nvswitch"
H100 = {"vendor": "10de", "device": "2330"}
FULL = {"gpu": {"passthrough": [H100], "nvswitch": "passthrough"}}
NA = "nodeagent.io"


def summary_of(root: Path) -> dict[str, Any]:
    from fixtures.hostgen import read_summary

    return read_summary(root)


def addresses(root: Path, device: str) -> list[str]:
    return sorted(f["address"] for f in summary_of(root)["pci"] if f["vendor"] == "10de" and f["device"] == device)


def emulated(root: Path) -> Host:
    native = {f["address"]: f["driver"] for f in summary_of(root)["pci"] if f["driver"]}
    return KernelEmulator(root, native=native).install(Host(str(root)))


def driver(root: Path, address: str) -> str | None:
    link = root / f"sys/bus/pci/devices/{address}/driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


@pytest.fixture
def hgx(fresh_host_tree: Callable[[str], Path]) -> tuple[Host, Path]:
    root = fresh_host_tree(HGX)
    return emulated(root), root


def test_plan_binds_every_gpu_and_nvswitch(hgx: tuple[Host, Path]) -> None:
    host, root = hgx
    gpus, switches = addresses(root, "2330"), addresses(root, "22a3")
    _, plan = planned(host, FULL)
    moves = {c.target: (c.current, c.desired, c.note) for c in plan.changes if c.action == "pci-bind"}
    assert sorted(moves) == sorted(gpus + switches)
    assert {moves[a][:2] for a in moves} == {("nvidia", "vfio-pci")}
    assert all(moves[a][2].startswith("NVSwitch GH100 [H100 NVSwitch], IOMMU group") for a in switches)
    assert not plan.refusals
    conf = next(c for c in plan.changes if c.path == "/etc/modprobe.d/90-nodeagent-vfio.conf")
    # Every 2330 and every 22a3 of the node moves, so vfio-pci may claim both ids at boot.
    assert "options vfio-pci ids=10de:22a3,10de:2330" in conf.detail["content"]


def test_the_default_leaves_the_nvswitches_to_the_host(hgx: tuple[Host, Path]) -> None:
    """spec.gpu.nvswitch unset (host): the shared-NVSwitch model, Fabric Manager keeps them."""
    host, root = hgx
    _, plan = planned(host, {"gpu": {"passthrough": [H100]}})
    moved = {c.target for c in plan.changes if c.action == "pci-bind"}
    assert moved == set(addresses(root, "2330"))
    conf = next(c for c in plan.changes if c.path == "/etc/modprobe.d/90-nodeagent-vfio.conf")
    assert "ids=10de:2330\n" in conf.detail["content"]


def test_apply_then_revert_is_byte_exact(hgx: tuple[Host, Path]) -> None:
    host, root = hgx
    gpus, switches = addresses(root, "2330"), addresses(root, "22a3")
    before = snapshot(root)
    result = applied(host, FULL)
    assert result.exit_code == 0, result.failure
    assert {driver(root, a) for a in gpus + switches} == {"vfio-pci"}
    # The driver link is the kernel's relative one, like every other link of the tree.
    assert os.readlink(root / f"sys/bus/pci/devices/{switches[0]}/driver") == \
        "../../../../../../bus/pci/drivers/vfio-pci"

    inv = discover(Host(str(root)))
    [fabric] = inv.nvlink_fabrics
    assert (fabric.mode, fabric.passthrough_gpus, fabric.nvswitches) == ("passthrough", gpus, switches)
    assert all(s.passthrough_ready for s in inv.nvswitch_devices)
    labels = compute_labels(inv).labels
    assert {k: v for k, v in labels.items() if k.startswith(f"{NA}/gpu-passthrough")} == {
        f"{NA}/gpu-passthrough": "true", f"{NA}/gpu-passthrough-count": "8",
        f"{NA}/gpu-passthrough.product": "GH100_H100_SXM5_80GB",
        f"{NA}/gpu-passthrough-count.GH100_H100_SXM5_80GB": "8",
        f"{NA}/gpu-passthrough.memory-mib": str(80 * 1024),
        f"{NA}/gpu-passthrough.nvlink-gpus": "8",
        f"{NA}/gpu-passthrough.nvlink-mode": "passthrough",
    }
    _, again = planned(host, FULL)
    assert again.changes == []  # converged

    assert revert(host).exit_code == 0
    assert {driver(root, a) for a in gpus + switches} == {"nvidia"}
    after = snapshot(root)
    # modprobe vfio-pci is the one change revert leaves (declared not reversible): the driver's directory.
    loaded = {k for k in after if k.startswith("sys/bus/pci/drivers/vfio-pci/")}
    assert loaded and {k: v for k, v in after.items() if k not in loaded} == before


def test_fabric_manager_holding_the_nvswitches_is_refused(hgx: tuple[Host, Path]) -> None:
    host, root = hgx
    switches = addresses(root, "22a3")
    proc = root / "proc/4242"
    (proc / "fd").mkdir(parents=True)
    (proc / "comm").write_text("nv-fabricmanage\n")
    (proc / "fd/3").symlink_to("/dev/nvidia-nvswitchctl")
    before = snapshot(root)
    _, plan = planned(host, FULL)
    refused = {r.target: r.reason for r in plan.refusals}
    assert sorted(refused) == switches
    assert all("/dev/nvidia-nvswitchctl is open by pid 4242 (nv-fabricmanage)" in r for r in refused.values())
    assert not any(r.forceable for r in plan.refusals)
    assert applied(host, FULL, force=True).exit_code == 2 and snapshot(root) == before


def test_an_nvswitch_group_that_is_not_viable_is_refused(tmp_path: Path) -> None:
    """An NVSwitch sharing its IOMMU group with an unrelated NIC: the whole group would go to the VM."""
    from fixtures.hostgen import build_host, load_spec

    _, spec = load_spec(HGX)
    devices = spec["pci"]["devices"]
    first = next(d for d in devices if d["model"] == "h100-nvswitch")
    first["group"] = "shared"
    devices.append({"path": "00:01.0/04:00.0/05:04.0/0a:00.0", "model": "connectx7", "driver": "mlx5_core",
                    "group": "shared"})
    root = build_host(spec, tmp_path / "hgx-shared")
    host = emulated(root)
    nic = next(f["address"] for f in summary_of(root)["pci"] if f["vendor"] == "15b3")  # the ConnectX-7
    switch = addresses(root, "22a3")[0]
    before = snapshot(root)
    _, plan = planned(host, FULL, force=True)
    reasons = [r.reason for r in plan.refusals if r.target == switch]
    assert any(f"also holds {nic} (network, driver mlx5_core)" in r and "not viable" in r for r in reasons), reasons
    assert not [c for c in plan.changes if c.action == "pci-bind" and c.target in (switch, nic)]
    assert applied(host, FULL, force=True).exit_code == 2 and snapshot(root) == before


def test_nvswitch_passthrough_on_a_host_without_nvswitches_is_a_skip(fresh_host_tree: Callable[[str], Path]) -> None:
    root = fresh_host_tree("amd-nps4-consumer")
    _, plan = planned(Host(str(root)), {"gpu": {"nvswitch": "passthrough"}})
    assert [(s.target, s.reason) for s in plan.skipped if s.subsystem == "vfio"] == [
        ("spec.gpu.nvswitch", "no NVSwitch on this node")]
    assert not [c for c in plan.changes if c.action == "pci-bind"]


def test_with_the_iommu_off_the_nvswitches_wait_for_the_reboot(tmp_path: Path) -> None:
    """IOMMU off, the profile turning it on: GPUs and NVSwitches are bound after the reboot, each said so."""
    from fixtures.hostgen import build_host, load_spec

    _, spec = load_spec(HGX)
    spec["iommu"] = {"firmware": "intel", "enabled": False}
    spec["kernel"]["cmdline"] = spec["kernel"]["cmdline"].replace(" intel_iommu=on iommu=pt", "")
    root = build_host(spec, tmp_path / "hgx-no-iommu")
    _, plan = planned(emulated(root), FULL)
    waiting = {s.target: s.reason for s in plan.skipped if s.subsystem == "vfio"}
    assert sorted(waiting) == sorted(addresses(root, "2330") + addresses(root, "22a3"))
    assert all(waiting[a].startswith("the IOMMU is off: the boot arguments turn it on; the NVSwitch is bound after "
                                     "the reboot") for a in addresses(root, "22a3"))
    assert not plan.refusals and not [c for c in plan.changes if c.action == "pci-bind"]
    args = next(c for c in plan.changes if c.subsystem == "bootargs")
    assert "intel_iommu=on" in str(args.desired)
