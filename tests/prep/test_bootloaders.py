"""Boot arguments where each bootloader family reads them: GRUB drop-in, grubby (BLS), kernel-install.

Fixture hosts (fixtures/specs): ``rhel9-grubby`` (RHEL 9, GRUB + BLS entries, two kernels),
``fedora-sdboot`` (Fedora 40, systemd-boot on /boot/efi) and ``ubuntu-grub`` (Ubuntu 24.04).

grubby and kernel-install are not packaged for Debian, where the tests run, and the real
kernel-install reads this machine's /etc, not a fixture's: :class:`BootTools` stands in for them
with their documented behaviour on the fixture's files (grubby --update-kernel=ALL --args replaces
an argument of the same name or appends it, --remove-args drops it; kernel-install add rewrites the
version's entry ``options`` from /etc/kernel/cmdline). What is under test is nodeagent: which
family it detects, the exact commands it plans, the journal, and that revert restores every file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fixtures.hostgen import build_host
from nodeagent.cli import main
from nodeagent.discover import discover
from nodeagent.host import CommandResult, Host
from nodeagent.prep.apply import EXIT_PENDING, revert
from tests.prep.helpers import applied, planned
from tests.support.trees import snapshot

IOMMU = {"kernel": {"iommu": True}}


class BootTools:
    """grubby and kernel-install acting on a fixture tree (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> CommandResult:
        self.calls.append(list(argv))
        name = os.path.basename(argv[0])
        if name == "grubby":
            return self._grubby(argv)
        if name == "kernel-install":
            return self._kernel_install(argv)
        return CommandResult(list(argv), 0)  # update-grub: nothing to check in the tree

    def _entries(self, directory: str) -> list[Path]:
        return sorted((self.root / directory).glob("*.conf"))

    @staticmethod
    def _set_options(entry: Path, words: list[str]) -> None:
        lines = entry.read_text().splitlines()
        for i, line in enumerate(lines):
            key, _, _ = line.partition(" ")
            if key == "options":
                spacing = re.match(r"options\s+", line)
                lines[i] = (spacing.group(0) if spacing else "options ") + " ".join(words)
        entry.write_text("\n".join(lines) + "\n")

    @staticmethod
    def _options(entry: Path) -> list[str]:
        line = next(x for x in entry.read_text().splitlines() if x.startswith("options"))
        return line.split()[1:]

    def _grubby(self, argv: list[str]) -> CommandResult:
        assert argv[1] == "--update-kernel=ALL", argv
        flag, _, value = argv[2].partition("=")
        for entry in self._entries("boot/loader/entries"):
            words = self._options(entry)
            for arg in value.split():
                key = arg.split("=", 1)[0]
                same = [i for i, w in enumerate(words) if w.split("=", 1)[0] == key]
                if flag == "--args":
                    if same:
                        words[same[0]] = arg
                    else:
                        words.append(arg)
                elif flag == "--remove-args":
                    words = [w for w in words if w != arg and ("=" in arg or w.split("=", 1)[0] != key)]
            self._set_options(entry, words)
        return CommandResult(list(argv), 0)

    def _kernel_install(self, argv: list[str]) -> CommandResult:
        assert argv[1] == "add" and argv[3] == f"/usr/lib/modules/{argv[2]}/vmlinuz", argv
        cmdline = (self.root / "etc/kernel/cmdline").read_text().split()
        machine_id = (self.root / "etc/machine-id").read_text().strip()
        self._set_options(self.root / f"boot/efi/loader/entries/{machine_id}-{argv[2]}.conf", cmdline)
        return CommandResult(list(argv), 0)


@pytest.fixture
def tree(tmp_path: Path):  # type: ignore[no-untyped-def]
    def build(name: str) -> tuple[Path, Host, BootTools]:
        root = build_host(name, tmp_path / name)
        tools = BootTools(root)
        return root, Host(str(root), command_runner=tools), tools

    return build


def bootargs(plan):  # type: ignore[no-untyped-def]
    return [c for c in plan.changes if c.subsystem == "bootargs"]


def test_rhel9_plans_grubby_and_reverts_every_entry_exactly(tree) -> None:  # type: ignore[no-untyped-def]
    root, host, tools = tree("rhel9-grubby")
    _, plan = planned(host, IOMMU)
    [change] = bootargs(plan)
    assert change.detail["commands"] == [["/usr/sbin/grubby", "--update-kernel=ALL", "--args=intel_iommu=on iommu=pt"]]
    assert "runs: /usr/sbin/grubby --update-kernel=ALL '--args=intel_iommu=on iommu=pt'" in change.note
    before = snapshot(root)
    result = applied(host, IOMMU)
    assert result.exit_code == EXIT_PENDING, result  # written; the kernel takes them at the next boot
    entries = sorted((root / "boot/loader/entries").glob("*.conf"))
    assert len(entries) == 2
    for entry in entries:
        assert "intel_iommu=on iommu=pt" in entry.read_text()
    assert not (root / "etc/default/grub.d/90-nodeagent.cfg").exists()  # nothing written where nothing reads it
    assert discover(Host(str(root))).prep.pending_boot_args == ["intel_iommu=on", "iommu=pt"]
    _, again = planned(host, IOMMU)
    assert not bootargs(again)  # converged: the record says the arguments are in place
    assert revert(host).exit_code == 0
    assert tools.calls[-1] == ["/usr/sbin/grubby", "--update-kernel=ALL", "--remove-args=intel_iommu=on iommu=pt"]
    after = snapshot(root)
    for path in [p for p in before if p.startswith(("boot/", "etc/"))]:
        assert after.get(path) == before[path], path
    assert "var/lib/nodeagent/bootargs" not in after


def test_grubby_changes_only_nodeagents_own_arguments(tree) -> None:  # type: ignore[no-untyped-def]
    _, host, _ = tree("rhel9-grubby")
    assert applied(host, {"kernel": {"iommu": True, "additionalArgs": ["mitigations=auto"]}}).exit_code == EXIT_PENDING
    _, plan = planned(host, IOMMU)
    [change] = bootargs(plan)
    assert change.detail["commands"] == [["/usr/sbin/grubby", "--update-kernel=ALL", "--remove-args=mitigations=auto"]]
    assert change.current == ["intel_iommu=on", "iommu=pt", "mitigations=auto"]


def test_fedora_systemd_boot_plans_kernel_cmdline_and_kernel_install(tree) -> None:  # type: ignore[no-untyped-def]
    root, host, tools = tree("fedora-sdboot")
    before = snapshot(root)
    _, plan = planned(host, IOMMU)
    [change] = bootargs(plan)
    assert change.path == "/etc/kernel/cmdline"
    assert change.detail["content"] == "root=UUID=7d3e6c1a-2b4f-4e8a-9c5d-1f0e2a3b4c5d ro rootflags=subvol=root " \
                                       "intel_iommu=on iommu=pt\n"
    assert change.detail["commands"] == [["/usr/bin/kernel-install", "add", "6.8.5-301.fc40.x86_64",
                                          "/usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz"]]
    assert applied(host, IOMMU).exit_code == EXIT_PENDING
    entry = next((root / "boot/efi/loader/entries").glob("*.conf")).read_text()
    assert "options    root=UUID=7d3e6c1a-2b4f-4e8a-9c5d-1f0e2a3b4c5d ro rootflags=subvol=root intel_iommu=on " \
           "iommu=pt" in entry
    assert revert(host).exit_code == 0
    assert tools.calls[-1][:2] == ["/usr/bin/kernel-install", "add"]
    after = snapshot(root)
    for path in [p for p in before if p.startswith(("boot/", "etc/"))]:
        assert after.get(path) == before[path], path


def test_ubuntu_keeps_the_grub_dropin(tree) -> None:  # type: ignore[no-untyped-def]
    root, host, tools = tree("ubuntu-grub")
    before = snapshot(root)
    assert applied(host, IOMMU).exit_code == EXIT_PENDING
    dropin = (root / "etc/default/grub.d/90-nodeagent.cfg").read_text()
    assert 'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} intel_iommu=on iommu=pt"' in dropin
    assert ["update-grub"] in tools.calls and not (root / "var/lib/nodeagent/bootargs").exists()
    assert revert(host).exit_code == 0
    after = snapshot(root)
    for path in [p for p in before if p.startswith(("boot/", "etc/"))]:
        assert after.get(path) == before[path], path
    assert "etc/default/grub.d/90-nodeagent.cfg" not in after


def test_unknown_bootloader_is_a_clear_refusal(tmp_path: Path) -> None:
    """SLES 15 without grubby or kernel-install: its grub2-mkconfig does not read grub.d."""
    root = build_host({**_spec("minimal"), "os": "sles-15"}, tmp_path / "sles")
    host = Host(str(root))
    _, plan = planned(host, IOMMU)
    assert not bootargs(plan)
    [refusal] = [r for r in plan.refusals if r.subsystem == "bootargs"]
    assert "unknown bootloader" in refusal.reason and "ID=sles" in refusal.reason
    profile = tmp_path / "profile.yaml"
    profile.write_text("apiVersion: nodeagent.io/v1alpha1\nkind: NodeProfile\nmetadata: {name: iommu}\n"
                       "spec:\n  kernel: {iommu: true}\n")
    result = CliRunner().invoke(main, ["--root", str(root), "plan", "-f", str(profile)])
    assert result.exit_code != 0 and "unknown bootloader" in result.output


def test_plan_under_root_shows_the_exact_commands(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("apiVersion: nodeagent.io/v1alpha1\nkind: NodeProfile\nmetadata: {name: iommu}\n"
                       "spec:\n  kernel: {iommu: true}\n")
    for name, command in (("rhel9-grubby", "/usr/sbin/grubby --update-kernel=ALL '--args=intel_iommu=on iommu=pt'"),
                          ("fedora-sdboot", "/usr/bin/kernel-install add 6.8.5-301.fc40.x86_64 "
                                            "/usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz")):
        root = build_host(name, tmp_path / name)
        result = CliRunner().invoke(main, ["--root", str(root), "plan", "-f", str(profile)])
        assert result.exit_code == 0, result.output
        assert command in result.output


def _spec(name: str) -> dict:  # type: ignore[type-arg]
    from fixtures.hostgen import load_spec

    return dict(load_spec(name)[1])
