"""Process discovery (is kubelet running, since when?): the start from psutil on a live host, from the files elsewhere.

The live path runs against this machine's real process table with a real process (a copy of
``sleep`` under a name of its own, so no other test sees a "kubelet"); the non-live path reads the
same /proc as files, and the two must agree.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nodeagent.discover.process import find_process, procfs_path
from nodeagent.host import Host
from tests.support.waiting import wait_for

NAME = "na-kubelet-tst"  # under 16 characters: the kernel's comm holds it whole


@pytest.fixture
def named_process(tmp_path: Path) -> Iterator[tuple[int, float, float]]:
    """A running process called NAME: (pid, epoch before start, epoch after start)."""
    binary = tmp_path / NAME
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    before = time.time()
    proc = subprocess.Popen([str(binary), "60"])
    after = time.time()
    try:
        # Popen returns once forked; the kernel renames the child at exec
        comm = Path(f"/proc/{proc.pid}/comm")
        wait_for(lambda: comm.read_text().strip() == NAME, timeout=30, what=f"{NAME} exec'd")
        yield proc.pid, before, after
    finally:
        proc.kill()
        proc.wait()


def test_live_host_finds_the_process_and_its_start_through_psutil(named_process: tuple[int, float, float]) -> None:
    _, before, after = named_process
    running, started_at = find_process(Host("/"), {NAME})
    assert running is True
    # /proc/stat's btime has whole seconds and the start is counted in clock ticks: allow for both
    assert started_at is not None and before - 2 <= started_at <= after + 2


def test_live_and_file_readings_agree(named_process: tuple[int, float, float]) -> None:
    live = find_process(Host("/"), {NAME})
    as_files = find_process(Host("/", live=False), {NAME})  # the fixture path, on the same /proc
    assert live[0] is as_files[0] is True
    assert live[1] is not None and as_files[1] is not None and abs(live[1] - as_files[1]) < 1.0


def test_no_such_process_on_the_live_host() -> None:
    assert find_process(Host("/"), {"na-no-such-proc"}) == (False, None)


def test_procfs_path_is_swapped_and_restored(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/stat").write_text("btime 1000\n")
    with procfs_path(str(tmp_path / "proc")) as module:
        assert module.boot_time() == 1000  # read from the tree, not from the real /proc
    assert psutil.PROCFS_PATH == "/proc"
    assert psutil.boot_time() != 1000


def test_live_root_without_a_process_table_is_unknown(tmp_path: Path) -> None:
    """``--root /host --live`` where /host/proc holds no processes: unknown, not "not running"."""
    (tmp_path / "proc").mkdir()
    assert find_process(Host(str(tmp_path), live=True), {NAME}) == (None, None)
