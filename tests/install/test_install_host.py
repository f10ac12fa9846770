"""systemd/install.sh: the host-side install (a venv under /opt/nodeagent, /usr/bin/nodeagent, the
units) staged under a temporary root that carries this machine's systemd units; the installed units
pass ``systemd-analyze verify`` there, and ``--uninstall`` takes back exactly what was installed.

Real components: the system Python's venv and pip (PyPI for nodeagent's dependencies) and
systemd-analyze.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "systemd" / "install.sh"
UNITS = ("nodeagent.service", "nodeagent-prep.service")
# The Python a stock Debian host has (PEP 668-managed); elsewhere the one running the tests.
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # pip installs from PyPI: minutes on a busy machine


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _host_root(root: Path) -> None:
    """What a Debian host has that the units refer to: systemd's own units, /bin/kill (merged /usr)."""
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("kill") or "/usr/bin/kill", root / "usr/bin/kill")
    (root / "bin").symlink_to("usr/bin")


def _script(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESTDIR": str(root)}
    env.pop("PYTHONPATH", None)  # the installed copy, not the checkout, must answer
    return subprocess.run(["sh", str(INSTALL), *args], env=env, capture_output=True, text=True, timeout=900,
                          check=False)


def _verify(root: Path) -> subprocess.CompletedProcess[str]:
    units = [str(root / "etc/systemd/system" / u) for u in UNITS]
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units], capture_output=True, text=True,
                          timeout=120, check=False)


def test_install_verify_and_uninstall_under_a_temporary_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _host_root(root)
    before = _tree(root)

    done = _script(root, "--python", SYSTEM_PYTHON)
    assert done.returncode == 0, done.stderr
    link = root / "usr/bin/nodeagent"
    assert os.readlink(link) == "../../opt/nodeagent/bin/nodeagent"
    version = subprocess.run([str(link), "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and "0.1.0" in version.stdout, version.stderr
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).read_text() == (REPO / "systemd" / unit).read_text()
    assert "NODEAGENT_SERVE_ARGS=" in (root / "etc/default/nodeagent").read_text()

    verified = _verify(root)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr
    link.rename(tmp_path / "moved")  # the check really looks for the binary the units run
    assert "/usr/bin/nodeagent" in _verify(root).stderr
    (tmp_path / "moved").rename(link)

    # A journal of host changes: uninstall refuses (revert first), and removes nothing.
    journal = root / "var/lib/nodeagent/journal.json"
    journal.parent.mkdir(parents=True)
    journal.write_text('{"version": 1, "entries": []}\n')
    installed = _tree(root)
    refused = _script(root, "--uninstall")
    assert refused.returncode == 1 and "nodeagent revert --yes" in refused.stderr
    assert _tree(root) == installed

    journal.unlink()
    done = _script(root, "--uninstall")
    assert done.returncode == 0, done.stderr
    kept = {"etc", "etc/nodeagent", "etc/nodeagent/profiles.d", "etc/default", "etc/systemd", "etc/systemd/system",
            "var", "var/lib", "var/lib/nodeagent", "opt"}  # the admin's profiles and the state directory stay
    assert _tree(root) - before == kept


def test_an_edited_defaults_file_and_a_foreign_binary_are_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/nodeagent").write_text("#!/bin/sh\n")  # say, a distribution package's
    refused = _script(root, "--python", SYSTEM_PYTHON)
    assert refused.returncode == 1 and "not this installer's symlink" in refused.stderr
    assert not (root / "opt").exists()

    (root / "usr/bin/nodeagent").unlink()
    assert _script(root, "--python", SYSTEM_PYTHON).returncode == 0
    defaults = root / "etc/default/nodeagent"
    defaults.write_text(defaults.read_text() + 'NODEAGENT_SERVE_ARGS="--interval 30"\n')
    done = _script(root, "--uninstall")
    assert done.returncode == 0 and "kept /etc/default/nodeagent" in done.stderr
    assert defaults.exists() and not (root / "opt/nodeagent").exists()


def test_bad_arguments_are_refused_naming_them(tmp_path: Path) -> None:
    done = _script(tmp_path, "--extras", "libvirt;rm")
    assert done.returncode == 1 and "--extras" in done.stderr
    done = _script(tmp_path, "--bogus")
    assert done.returncode == 2 and "--bogus" in done.stderr
    assert _script(tmp_path, "--uninstall").returncode == 1  # nothing installed here
    assert list(tmp_path.iterdir()) == []
