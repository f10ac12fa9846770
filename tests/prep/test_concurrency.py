"""Crash consistency and racing operators, with real processes on fixture trees (issue 12).

* SIGKILL at every host write of an ``apply`` (just before it, and just after it), then ``revert``:
  the tree is back byte for byte, directories included.
* Two ``apply`` processes with different profiles started at once: the host ends up as one of the
  profiles describes it, never a mix; a held lock makes ``apply`` wait (saying so) or fail with
  "another apply is running".

The applies run as ``python -m nodeagent`` (or the crash driver around it) on trees from
tests/support/trees.py, without the kernel emulator: every write lands in a regular file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.host import Host
from nodeagent.prep.apply import revert
from nodeagent.prep.lock import apply_lock
from tests.prep.helpers import profile_doc, read
from tests.support.trees import TreeSpec, build_tree
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
FULL = {
    "hugepages": {"pages": [{"size": "2Mi", "count": 64, "numaNode": 0}, {"size": "2Mi", "count": 32, "numaNode": 1}]},
    "ksm": {"enabled": True, "pagesToScan": 1000, "sleepMillisecs": 10},
    "cpu": {"reserved": "0,4", "isolated": "1-3,5-7", "governor": "performance"},
    "kernel": {"additionalArgs": ["nosoftlockup"]},
}
GOV1 = "/sys/devices/system/cpu/cpufreq/policy1/scaling_governor"
N0_2M = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"
N1_2M = "/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"


def _debian_tree(path: Path) -> Path:
    """A Debian host with GRUB's drop-in directory but no update-grub under the root (the command is
    printed, not run: a fixture root runs no host commands), and /var/lib as every host has it."""
    root = build_tree(path, TreeSpec(grub_tool=None))
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "etc/default/grub.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX=""\n')
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "NODE_NAME": "", "KUBECONFIG": "/nonexistent"}


def _profile(tmp_path: Path, name: str, spec: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(profile_doc(spec, name=name)))
    return path


def _state(root: Path) -> dict[str, bytes | str]:
    """Every file's bytes, every symlink's target and every directory, but nodeagent's own state dir.

    Kernel attributes (sys/, proc/) are regular files here, where a write of ``64`` stores no
    newline; they are compared as the kernel prints them (the value, then a newline).
    """
    state: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if rel == "var/lib/nodeagent" or rel.startswith("var/lib/nodeagent/"):
                continue  # the lock file and the journal's directory stay, by design
            if full.is_symlink():
                state[rel] = "-> " + os.readlink(full)
            elif full.is_dir():
                state[rel] = "dir"
            elif rel.startswith(("sys/", "proc/")):
                state[rel] = full.read_bytes().strip() + b"\n"
            else:
                state[rel] = full.read_bytes()
    return state


def _count_writes(root: Path, profile: Path) -> int:
    done = subprocess.run([sys.executable, "-m", "nodeagent", "--root", str(root), "apply", "-f", str(profile),
                           "--yes", "--dry-run", "-o", "json"], capture_output=True, text=True, env=_env(),
                          check=False, cwd=REPO)
    assert done.returncode in (0, 3), done.stderr
    return len(yaml.safe_load(done.stdout)["writes"])


def test_sigkill_at_every_write_then_revert_restores_the_tree(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "full", FULL)
    pristine = _debian_tree(tmp_path / "pristine")
    before = _state(pristine)
    writes = _count_writes(pristine, profile)
    assert writes >= 12  # hugepages x2, KSM x3, governors, the installed profile, the grub drop-in
    import shutil

    for n in range(1, writes + 1):
        for mode in ("before", "after"):
            root = tmp_path / f"kill-{n}-{mode}"
            shutil.copytree(pristine, root, symlinks=True)
            done = subprocess.run([sys.executable, "-m", "tests.prep.crash_driver", str(n), mode, "--root", str(root),
                                   "apply", "-f", str(profile), "--yes"], capture_output=True, text=True,
                                  env=_env(), check=False, cwd=REPO)
            assert done.returncode == -signal.SIGKILL, (n, mode, done.returncode, done.stderr[-2000:])
            result = revert(Host(str(root)))
            assert result.exit_code == 0, (n, mode, result)
            assert _state(root) == before, (n, mode)
            shutil.rmtree(root)


@pytest.mark.parametrize("round_", range(3))
def test_two_concurrent_applies_never_leave_a_mix(tmp_path: Path, round_: int) -> None:
    """A: 32+32 pages, the performance governor; B: 16+16 and powersave, the original governor.

    Planned from the same starting point, B plans no governor change: run after A, it would leave
    A's governor with its own pages. Planned under the lock, the later one plans from the earlier's
    result. Which starts first is up to the scheduler, hence a few rounds.
    """
    root = _debian_tree(tmp_path / "host")
    a = _profile(tmp_path, "profile-a", {"hugepages": {"pages": [{"size": "2Mi", "count": 64}]},
                                         "cpu": {"governor": "performance"}})
    b = _profile(tmp_path, "profile-b", {"hugepages": {"pages": [{"size": "2Mi", "count": 32}]},
                                         "cpu": {"governor": "powersave"}})
    command = [sys.executable, "-m", "nodeagent", "--root", str(root), "apply", "--yes", "-f"]
    procs = [subprocess.Popen([*command, str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(), cwd=REPO) for p in (a, b)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    installed = yaml.safe_load((root / "etc/nodeagent/profile.yaml").read_text())["metadata"]["name"]
    last = {"profile-a": ("32", "performance"), "profile-b": ("16", "powersave")}[installed]
    assert (read(root, N0_2M), read(root, N1_2M), read(root, GOV1)) == (last[0], last[0], last[1])


def test_a_held_lock_makes_apply_wait_then_proceed(tmp_path: Path) -> None:
    root = _debian_tree(tmp_path / "host")
    profile = _profile(tmp_path, "p", {"hugepages": {"pages": [{"size": "2Mi", "count": 8, "numaNode": 0}]}})
    stderr = tmp_path / "stderr"
    with apply_lock(Host(str(root))), stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "nodeagent", "--root", str(root), "apply", "--yes",
                                 "--lock-timeout", "300", "-f", str(profile)], stdout=subprocess.DEVNULL,
                                stderr=err, env=_env(), cwd=REPO)
        wait_for(lambda: "waiting up to 300s" in stderr.read_text(), timeout=120, what="apply says it waits")
        assert proc.poll() is None and read(root, N0_2M) == "0"
    assert proc.wait(timeout=300) == 0
    assert f"another apply is running (pid {os.getpid()})" in stderr.read_text()
    assert read(root, N0_2M) == "8"


@pytest.mark.parametrize("command", ["apply", "revert"])
def test_a_held_lock_fails_after_the_timeout_with_a_clear_message(tmp_path: Path, command: str) -> None:
    root = _debian_tree(tmp_path / "host")
    profile = _profile(tmp_path, "p", {"hugepages": {"pages": [{"size": "2Mi", "count": 8, "numaNode": 0}]}})
    args = ["apply", "-f", str(profile)] if command == "apply" else ["revert"]
    with apply_lock(Host(str(root))):
        done = subprocess.run([sys.executable, "-m", "nodeagent", "--root", str(root), *args, "--yes",
                               "--lock-timeout", "0"], capture_output=True, text=True, env=_env(), check=False,
                              cwd=REPO)
    assert done.returncode == (2 if command == "apply" else 1), done.stderr
    assert "another apply is running" in done.stderr and "nothing was changed" in done.stderr
    assert read(root, N0_2M) == "0"
