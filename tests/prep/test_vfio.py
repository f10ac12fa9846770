"""GPUs to vfio-pci on emulated PCI trees: companions, refusals, the bind sequence and its rollback.

Never run against this machine's real PCI devices: every test here uses a fixture tree whose
driver files are emulated (``KernelEmulator`` moves the ``driver`` links).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from nodeagent.host import WriteRecord
from nodeagent.prep.apply import revert
from tests.prep.helpers import applied, journal, planned, read
from tests.support.faults import fail_writes, fault
from tests.support.trees import TreeSpec, nps4_like_pci, snapshot

RTX = {"gpu": {"passthrough": [{"vendor": "10de", "device": "2684"}]}}
RADEON = {"gpu": {"passthrough": [{"address": "0000:83:00.0"}]}}


def driver(root: Path, address: str) -> str | None:
    link = root / f"sys/bus/pci/devices/{address}/driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def spec(**kwargs) -> TreeSpec:  # type: ignore[no-untyped-def]
    return TreeSpec(vendor="AuthenticAMD", cmdline="ro amd_iommu=on iommu=pt", pci=nps4_like_pci(), **kwargs)


def test_plan_moves_the_audio_companion(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(spec())
    _, plan = planned(host, RTX)
    moves = [c for c in plan.changes if c.action == "pci-bind"]
    assert [(c.target, c.current, c.desired) for c in moves] == [("0000:41:00.0", "nvidia", "vfio-pci"),
                                                                  ("0000:41:00.1", "snd_hda_intel", "vfio-pci")]
    assert moves[1].note == "audio companion of 0000:41:00.0"
    assert not plan.refusals


def test_modprobe_conf_softdeps_and_safe_ids(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(spec())
    _, plan = planned(host, RTX)
    conf = next(c for c in plan.changes if c.path == "/etc/modprobe.d/90-nodeagent-vfio.conf")
    content = conf.detail["content"]
    assert "softdep nvidia pre: vfio-pci" in content and "softdep nouveau pre: vfio-pci" in content
    assert "options vfio-pci ids=10de:22ba,10de:2684" in content


def test_boot_vga_and_non_viable_group_are_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(spec())
    before = snapshot(root)
    _, plan = planned(host, RADEON)
    reasons = " | ".join(r.reason for r in plan.refusals)
    assert "boot VGA" in reasons
    assert "IOMMU group 30 also holds 0000:84:00.0 (usb, driver xhci_hcd)" in reasons
    assert not [c for c in plan.changes if c.action == "pci-bind"]
    _, forced = planned(host, RADEON, force=True)
    assert any("boot VGA" in r.reason for r in forced.forced)
    assert any("not viable" in r.reason for r in forced.refusals)  # --force never takes an unrelated device
    result = applied(host, RADEON, force=True)
    assert result.exit_code == 2 and snapshot(root) == before


def test_a_group_shared_with_a_device_already_on_vfio_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    """An unrelated device on vfio-pci (another VM's) still makes the group non-viable: a VFIO
    group goes to one VM whole, so the GPU could not be given to a different one."""
    from tests.support.trees import USB_ASMEDIA, PciFn

    pci = [fn for fn in nps4_like_pci() if fn.address != "0000:84:00.0"]
    pci.append(PciFn("0000:84:00.0", *USB_ASMEDIA, driver="vfio-pci", group=30))
    host, _, root = make_host(TreeSpec(vendor="AuthenticAMD", cmdline="ro amd_iommu=on iommu=pt", pci=pci))
    before = snapshot(root)
    _, plan = planned(host, RADEON, force=True)
    assert any("IOMMU group 30 also holds 0000:84:00.0 (usb, driver vfio-pci)" in r.reason for r in plan.refusals)
    assert not [c for c in plan.changes if c.action == "pci-bind"]
    assert applied(host, RADEON, force=True).exit_code == 2 and snapshot(root) == before


def test_iommu_off_is_refused_unless_the_profile_turns_it_on(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(vendor="AuthenticAMD", iommu=False, pci=nps4_like_pci()))
    _, plan = planned(host, {**RTX, "kernel": {"iommu": False}})
    assert plan.refusals and all("IOMMU is off" in r.reason for r in plan.refusals)
    _, plan = planned(host, RTX)  # iommu defaults to on with passthrough: boot args, then bind
    assert not plan.refusals
    assert any("IOMMU is off" in s.reason for s in plan.skipped)
    boot = next(c for c in plan.changes if c.subsystem == "bootargs")
    assert boot.desired == ["amd_iommu=on", "iommu=pt"]


def test_host_driver_in_use_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(spec())
    info = root / "proc/driver/nvidia/gpus/0000:41:00.0/information"
    info.parent.mkdir(parents=True)
    info.write_text("Model: NVIDIA GeForce RTX 4090\nDevice Minor: 0\n")
    (root / "proc/1/fd/7").symlink_to("/dev/nvidia0")
    _, plan = planned(host, RTX)
    (refusal,) = plan.refusals
    assert refusal.target == "0000:41:00.0" and not refusal.forceable
    assert "/dev/nvidia0 is open by pid 1 (systemd)" in refusal.reason
    _, plan = planned(host, RTX, force=True)
    assert plan.refusals


def test_bound_framebuffer_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    pci = nps4_like_pci()
    pci[0].framebuffer = True
    host, _, _ = make_host(TreeSpec(vendor="AuthenticAMD", pci=pci))
    _, plan = planned(host, RTX)
    assert any("framebuffer /dev/fb0" in r.reason for r in plan.refusals)


def test_bind_sequence_moves_the_links_and_revert_rebinds(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(spec())
    before = snapshot(root)
    result = applied(host, RTX)
    assert result.exit_code == 0, result.failure
    assert driver(root, "0000:41:00.0") == "vfio-pci" and driver(root, "0000:41:00.1") == "vfio-pci"
    assert read(root, "/sys/bus/pci/devices/0000:41:00.0/driver_override") == "vfio-pci"
    sequence = [(w.path.rsplit("/", 2)[-2:], w.value) for w in result.record.writes
                if "0000:41:00.0" in w.path or w.value == "0000:41:00.0"]
    assert sequence[:3] == [(["0000:41:00.0", "driver_override"], "vfio-pci"),
                            (["driver", "unbind"], "0000:41:00.0"),
                            (["pci", "drivers_probe"], "0000:41:00.0")]
    assert driver(root, "0000:83:00.0") == "amdgpu"  # untouched
    _, plan = planned(host, RTX)
    assert plan.changes == []  # converged
    assert revert(host).exit_code == 0
    assert driver(root, "0000:41:00.0") == "nvidia" and driver(root, "0000:41:00.1") == "snd_hda_intel"
    assert snapshot(root) == before


def test_vfio_pci_is_loaded_when_absent(make_host) -> None:  # type: ignore[no-untyped-def]
    host, emulator, root = make_host(spec(vfio_loaded=False))
    _, plan = planned(host, RTX)
    assert plan.changes[0].action == "modprobe" and not plan.changes[0].reversible
    result = applied(host, RTX)
    assert result.exit_code == 0, result.failure
    assert emulator.commands[0] == ["modprobe", "vfio-pci"]
    assert driver(root, "0000:41:00.1") == "vfio-pci"


def test_a_bind_failing_midway_restores_every_link(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(spec())
    before = snapshot(root)

    def probe_fails_for_audio(record: WriteRecord) -> None:
        if record.path == "/sys/bus/pci/drivers_probe" and record.value == "0000:41:00.1":
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), record.path)

    fault(host, probe_fails_for_audio)
    result = applied(host, RTX)
    assert result.exit_code == 1
    assert "0000:41:00.1" in (result.failure or "") and "ENODEV" in (result.failure or "")
    assert {o.change.target for o in result.outcomes if o.status == "restored"} >= {"0000:41:00.0", "0000:41:00.1"}
    assert driver(root, "0000:41:00.0") == "nvidia" and driver(root, "0000:41:00.1") == "snd_hda_intel"
    assert snapshot(root) == before
    assert journal(root) is None


@pytest.mark.parametrize("error", [errno.EBUSY, errno.EINVAL, errno.EACCES, errno.ENOENT],
                         ids=lambda e: errno.errorcode[e])
@pytest.mark.parametrize("suffix", ["0000:41:00.1/driver_override", "0000:41:00.0/driver/unbind",
                                    "/sys/bus/pci/drivers_probe", "/etc/modprobe.d/90-nodeagent-vfio.conf"])
def test_vfio_write_faults_roll_back(make_host, suffix: str, error: int) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(spec())
    before = snapshot(root)
    fail_writes(host, suffix, error)
    result = applied(host, RTX)
    assert result.exit_code == 1
    assert errno.errorcode[error] in (result.failure or "")
    assert not any(o.status == "restore-failed" for o in result.outcomes)
    assert snapshot(root) == before and journal(root) is None


def test_nps4_fixture_host_moves_the_audio_companion(fresh_host_tree) -> None:  # type: ignore[no-untyped-def]
    """On the shared amd-nps4-consumer fixture: put the RTX 4090 back on its host drivers, then plan."""
    pytest.importorskip("fixtures.hostgen")
    from nodeagent.discover import discover
    from nodeagent.host import Host

    root = fresh_host_tree("amd-nps4-consumer")
    inventory = discover(Host(str(root)))
    rtx = next(g for g in inventory.gpus if g.vendor_id == "10de")
    for member in rtx.group_members:
        link = root / f"sys/bus/pci/devices/{member.address}"
        device = Path(os.path.realpath(link))
        wanted = "nvidia" if member.kind == "gpu" else "snd_hda_intel"
        (root / f"sys/bus/pci/drivers/{wanted}").mkdir(parents=True, exist_ok=True)
        if (device / "driver").is_symlink():
            (device / "driver").unlink()
        (device / "driver").symlink_to(f"/sys/bus/pci/drivers/{wanted}")
        (device / "driver_override").write_text("(null)\n")
    host = Host(str(root))
    _, plan = planned(host, RTX)
    moved = {c.target: c.detail["kind"] for c in plan.changes if c.action == "pci-bind"}
    assert sorted(moved.values()) == ["audio", "gpu"], plan.to_dict()
    _, radeon = planned(host, {"gpu": {"passthrough": [{"vendor": "1002"}]}})
    reasons = " ".join(r.reason for r in radeon.refusals)
    assert "boot VGA" in reasons and "not viable" in reasons


def test_a_running_gpu_operator_vfio_manager_refuses_binding(make_host) -> None:  # type: ignore[no-untyped-def]
    """Either GPU Operator's sandbox vfio-manager binds GPUs on a node, or nodeagent: never both."""
    host, _, root = make_host(spec())
    # The nvidia-vfio-manager container's shell, as the DaemonSet starts it (it stays for the pod's life).
    proc = root / "proc/5150"
    proc.mkdir(parents=True)
    (proc / "cmdline").write_bytes(b"/bin/sh\0-c\0/bin/vfio-manage.sh bind --all && sleep inf\0")
    (proc / "comm").write_text("sh\n")
    before = snapshot(root)
    _, plan = planned(host, RTX)
    assert not [c for c in plan.changes if c.action == "pci-bind"]
    assert [r.target for r in plan.refusals] == ["0000:41:00.0"]
    assert "vfio-manager runs on this node (pid 5150)" in plan.refusals[0].reason
    assert not plan.refusals[0].forceable
    result = applied(host, RTX, force=True)
    assert result.exit_code == 2 and snapshot(root) == before


def test_no_vfio_manager_no_refusal(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(spec())
    proc = root / "proc/5151"
    proc.mkdir(parents=True)
    (proc / "cmdline").write_bytes(b"/usr/bin/sleep\0inf\0")
    _, plan = planned(host, RTX)
    assert [c.target for c in plan.changes if c.action == "pci-bind"] == ["0000:41:00.0", "0000:41:00.1"]
