"""tests/run.sh's install phase, with apt-get, dpkg-query and Python replaced by stand-ins on PATH:
it waits (bounded) for the dpkg lock, never leaves policy-rc.d behind, and says what it does."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _setup(tmp_path: Path, apt_body: str) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir / "dpkg-query", "exit 1\n")  # every package missing
    _stub(bin_dir / "apt-get", f'echo "$*" >> {tmp_path}/apt.log\n{apt_body}')
    _stub(bin_dir / "python3", "echo 'no venv here' >&2; exit 9\n")  # stops the run after the apt phase
    policy = tmp_path / "policy-rc.d"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NODEAGENT_POLICY_RC": str(policy),
           "NODEAGENT_VENV": str(tmp_path / "venv"), "NODEAGENT_APT_LOCK_WAIT": "30", "PYTHON": "python3"}
    return env, policy


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / "tests" / "run.sh")], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_it_waits_for_the_dpkg_lock_and_removes_policy_rc_d(tmp_path: Path) -> None:
    # The first `update` finds the lists lock taken; the next one gets it. policy-rc.d is in place
    # while apt runs.
    env, policy = _setup(tmp_path, f"""
[ -x {tmp_path}/policy-rc.d ] || {{ echo 'policy-rc.d missing' >&2; exit 1; }}
if echo "$*" | grep -qw update && [ ! -e {tmp_path}/locked-once ]; then
  touch {tmp_path}/locked-once
  echo 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)' >&2; exit 100
fi
exit 0
""")
    done = _run(env)
    assert done.returncode == 9, done.stderr  # apt phase passed, then the stand-in python3 failed
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert [next(w for w in c.split() if w in ("update", "install")) for c in calls] == ["update", "update", "install"]
    assert all("DPkg::Lock::Timeout=30" in c for c in calls)
    assert "waiting for another package manager" in done.stderr
    assert "installing Debian packages" in done.stderr
    assert not policy.exists()


def test_a_failed_install_leaves_no_policy_rc_d_and_says_why(tmp_path: Path) -> None:
    fail_install = 'echo "$*" | grep -qw install && { echo "E: Unable to locate package nope" >&2; exit 100; }\n'
    env, policy = _setup(tmp_path, fail_install + "exit 0\n")
    done = _run(env)
    assert done.returncode != 0
    assert "Unable to locate package nope" in done.stderr
    assert not policy.exists()


def test_an_interrupted_install_leaves_no_policy_rc_d(tmp_path: Path) -> None:
    env, policy = _setup(tmp_path, f"touch {tmp_path}/apt-started; sleep 60\n")
    process = subprocess.Popen(["bash", str(REPO / "tests" / "run.sh")], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "apt-started").exists():
            assert time.monotonic() < deadline, "apt-get never started"
            time.sleep(0.1)
        assert policy.exists()
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not policy.exists()


def test_an_existing_policy_rc_d_is_left_as_it_was(tmp_path: Path) -> None:
    env, policy = _setup(tmp_path, "exit 0\n")
    policy.write_text("#!/bin/sh\nexit 0\n")
    _run(env)
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"
