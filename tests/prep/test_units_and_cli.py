"""systemd units (systemd-analyze verify), and the CLI's exit codes (CONTRACT §1)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from nodeagent.cli import main
from nodeagent.commands.common import CliContext
from nodeagent.host import Host
from tests.prep.helpers import profile_doc
from tests.support.kernel import KernelEmulator
from tests.support.trees import TreeSpec, build_tree, nps4_like_pci, snapshot

REPO = Path(__file__).resolve().parents[2]
UNITS = ("nodeagent-prep.service", "nodeagent.service")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # The units name /usr/bin/nodeagent (where packages install it); verify checks that the binary
    # exists, so point ExecStart at this checkout's entry point and verify everything else as is.
    binary = shutil.which("nodeagent") or shutil.which("python3")
    assert binary
    for unit in UNITS:
        text = (REPO / "systemd" / unit).read_text()
        assert "/usr/bin/nodeagent" in text
        (tmp_path / unit).write_text(text.replace("/usr/bin/nodeagent", binary))
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / u) for u in UNITS)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_prep_unit_is_a_oneshot_before_kubelet() -> None:
    text = (REPO / "systemd" / "nodeagent-prep.service").read_text()
    for line in ("Type=oneshot", "RemainAfterExit=yes", "ConditionPathExists=/etc/nodeagent/profile.yaml",
                 "ExecStart=/usr/bin/nodeagent apply --boot -f /etc/nodeagent/profile.yaml"):
        assert line in text
    before = " ".join(x.partition("=")[2] for x in text.splitlines() if x.startswith("Before=")).split()
    assert {"kubelet.service", "k3s.service", "k3s-agent.service", "rke2-server.service", "rke2-agent.service",
            "snap.microk8s.daemon-kubelite.service"} <= set(before)
    assert "systemd-modules-load.service" in next(x for x in text.splitlines() if x.startswith("After="))


KUBELET_FLAVOUR_UNITS = ("kubelet.service", "k3s.service", "k3s-agent.service", "rke2-server.service",
                         "rke2-agent.service", "snap.microk8s.daemon-kubelite.service")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("flavour", KUBELET_FLAVOUR_UNITS)
def test_prep_orders_before_each_kubelet_flavour(tmp_path: Path, flavour: str) -> None:
    """Real systemd: with the flavour's unit installed, the prep unit is ordered before it (no cycle)."""
    binary = shutil.which("nodeagent") or shutil.which("python3")
    assert binary
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    text = (REPO / "systemd" / "nodeagent-prep.service").read_text().replace("/usr/bin/nodeagent", binary)
    (units / "nodeagent-prep.service").write_text(text)
    (units / flavour).write_text(f"[Unit]\nDescription=stand-in for {flavour}\n\n[Service]\nExecStart={binary}\n\n"
                                 "[Install]\nWantedBy=multi-user.target\n")
    done = subprocess.run(["systemd-analyze", "verify", str(units / flavour), str(units / "nodeagent-prep.service")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "cycle" not in done.stderr.lower(), done.stderr


def test_units_bound_their_memory() -> None:
    """A hostile profile or a bug fails the unit, never the node (issue: a huge CPU range)."""
    for unit in UNITS:
        lines = (REPO / "systemd" / unit).read_text().splitlines()
        limits = [x.split("=", 1)[1] for x in lines if x.startswith("MemoryMax=")]
        assert len(limits) == 1, unit
        assert limits[0].endswith("M") and 128 <= int(limits[0][:-1]) <= 1024, limits


def test_grub_template_matches_what_apply_writes() -> None:
    from nodeagent.owned import dropin_args
    from nodeagent.owned import render_dropin as render

    template = (REPO / "grub" / "90-nodeagent.cfg.template").read_text()
    rendered = render("@PROFILE@", ["@ARGS@"])
    assert rendered == template
    assert dropin_args(template) == ["@ARGS@"]


# --- CLI exit codes ----------------------------------------------------------------------------


@pytest.fixture
def cli_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A synthetic tree the CLI's Hosts are rooted in, with the kernel emulated."""
    trees: dict[str, Path] = {}

    def make(spec: TreeSpec) -> Path:
        root = build_tree(tmp_path / f"t{len(trees)}", spec)
        emulator = KernelEmulator(root, capacity=dict(spec.capacity),
                                  native={f.address: f.driver for f in spec.pci if f.driver})
        trees[str(root)] = root
        monkeypatch.setattr(CliContext, "host",
                            lambda self, **kw: emulator.install(Host(self.root, **kw)))
        return root

    monkeypatch.setattr("nodeagent.commands.prep.node_annotations", lambda name: (None, None))
    return make


def _invoke(root: Path, tmp_path: Path, spec: dict[str, Any], *args: str) -> Any:
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(profile_doc(spec)))
    return CliRunner().invoke(main, ["--root", str(root), *args, "-f", str(profile)], catch_exceptions=False)


def test_plan_exit_codes(cli_host: Any, tmp_path: Path) -> None:
    root = cli_host(TreeSpec(vendor="AuthenticAMD", pci=nps4_like_pci()))
    ok = _invoke(root, tmp_path, {"ksm": {"enabled": True}}, "plan")
    assert ok.exit_code == 0 and "ksm run: 0 -> 1  [now]" in ok.output
    refused = _invoke(root, tmp_path, {"gpu": {"passthrough": [{"vendor": "1002"}]}}, "plan")
    assert refused.exit_code == 1 and "boot VGA" in refused.output
    invalid = _invoke(root, tmp_path, {"ksm": {"enable": True}}, "plan")
    assert invalid.exit_code == 2 and "spec.ksm.enable: unknown field" in invalid.output
    as_json = _invoke(root, tmp_path, {"ksm": {"enabled": True}}, "plan", "-o", "json")
    assert yaml.safe_load(as_json.output)["changes"][0]["effect"] == "now"


def test_apply_exit_codes(cli_host: Any, tmp_path: Path) -> None:
    root = cli_host(TreeSpec(capacity={(0, 2048): 4}))
    before = snapshot(root)
    refused = _invoke(root, tmp_path, {"cpu": {"isolated": "0-7"}}, "apply", "--yes")
    assert refused.exit_code == 2 and "nothing was written" in refused.output
    assert snapshot(root) == before
    no_yes = _invoke(root, tmp_path, {"ksm": {"enabled": True}}, "apply")
    assert no_yes.exit_code == 2 and "pass --yes" in no_yes.output and snapshot(root) == before
    failed = _invoke(root, tmp_path, {"hugepages": {"pages": [{"size": "2Mi", "count": 64, "numaNode": 0}]}},
                     "apply", "--yes", "--hugepage-timeout", "0")
    assert failed.exit_code == 1 and "rolled back" in failed.output and snapshot(root) == before
    pending = _invoke(root, tmp_path, {"kernel": {"additionalArgs": ["nosoftlockup"]}}, "apply", "--yes")
    assert pending.exit_code == 3, pending.output
    boot = _invoke(root, tmp_path, {"kernel": {"additionalArgs": ["nosoftlockup"]}}, "apply", "--boot")
    assert boot.exit_code == 0  # the boot unit does not fail for a pending reboot
    converged = _invoke(root, tmp_path, {"ksm": {"enabled": True}}, "apply", "--yes")
    assert converged.exit_code == 0
    revert = CliRunner().invoke(main, ["--root", str(root), "revert", "--yes"], catch_exceptions=False)
    assert revert.exit_code == 0 and "restored" in revert.output
