"""Hostile host trees under --root: FIFOs, huge files, symlink loops, an empty or wrong root.

Each must end as a fact or a warning naming the file, never a hang, a memory blow-up or an
inventory that looks fine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from nodeagent.cli import main
from nodeagent.discover import discover
from nodeagent.host import BIG_FILES, READ_CAP, Host, HostError

KSM_RUN = "sys/kernel/mm/ksm/run"
NR_HUGEPAGES = "sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"


def warned(host: Host, path: str) -> tuple[object, list[str]]:
    with host.recording() as record:
        value = host.read_text(path)
    return value, [w.message for w in record.warnings if w.path == path]


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    os.mkfifo(tmp_path / "proc/cmdline")
    value, messages = warned(Host(str(tmp_path)), "/proc/cmdline")
    assert value is None
    assert messages == ["not a regular file (a FIFO); ignored"]


def test_a_fifo_with_a_writer_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    fifo = tmp_path / "proc/cmdline"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer open without a reader of its own
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        value, messages = warned(Host(str(tmp_path)), "/proc/cmdline")  # a writer that never writes
    finally:
        os.close(writer)
        os.close(reader)
    assert value is None and messages == ["not a regular file (a FIFO); ignored"]


def test_a_file_above_the_cap_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "sys/kernel/mm/ksm").mkdir(parents=True)
    (tmp_path / KSM_RUN).write_bytes(b"1" * (READ_CAP + 1))
    host = Host(str(tmp_path))
    value, messages = warned(host, "/" + KSM_RUN)
    assert value is None
    assert messages == ["larger than the 1 MiB read cap for this file; ignored"]
    with host.recording() as record:
        assert host.read_int("/" + KSM_RUN) is None
    assert len(record.warnings) == 1  # one warning, not a second "expected an integer"


def test_a_file_at_the_cap_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/big").write_bytes(b"x" * READ_CAP)
    value, messages = warned(Host(str(tmp_path)), "/etc/big")
    assert value == "x" * READ_CAP and messages == []


def test_known_big_files_have_a_larger_cap(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    block = "processor\t: {}\nvendor_id\t: GenuineIntel\nflags\t\t: " + "avx512f " * 150 + "\n\n"
    text = "".join(block.format(n) for n in range(2048))  # ~2.5 MiB: a 2048-CPU machine
    assert READ_CAP < len(text) < BIG_FILES["/proc/cpuinfo"]
    (tmp_path / "proc/cpuinfo").write_text(text)
    value, messages = warned(Host(str(tmp_path)), "/proc/cpuinfo")
    assert value == text and messages == []


def test_read_bytes_with_a_limit_gives_the_first_bytes(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/blob").write_bytes(bytes(range(256)) * 100)
    host = Host(str(tmp_path))
    assert host.read_bytes("/proc/blob", 10) == bytes(range(10))
    assert host.read_bytes("/proc/blob") == bytes(range(256)) * 100


def test_a_symlink_loop_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "sys/class/net").mkdir(parents=True)
    os.symlink("eth1", tmp_path / "sys/class/net/eth0")
    os.symlink("eth0", tmp_path / "sys/class/net/eth1")
    os.symlink("loop/x", tmp_path / "sys/loop")  # a directory loop on the way to the file
    host = Host(str(tmp_path))
    for path in ("/sys/class/net/eth0", "/sys/loop/x/y"):
        value, messages = warned(host, path)
        assert value is None
        assert messages == ["symlink loop (too many levels of symbolic links); ignored"]


def test_a_directory_where_a_file_is_expected_is_absent(tmp_path: Path) -> None:
    (tmp_path / "proc/cmdline").mkdir(parents=True)
    assert warned(Host(str(tmp_path)), "/proc/cmdline") == (None, [])


def test_discovery_survives_fifos_and_huge_files_in_a_fixture_host(
        fresh_host_tree: Callable[[str], Path]) -> None:
    root = fresh_host_tree("intel-2s-8gpu")
    for relative in (KSM_RUN, "proc/cmdline", "proc/sys/kernel/hostname"):
        (root / relative).unlink()
        os.mkfifo(root / relative)
    (root / NR_HUGEPAGES).write_bytes(b"0" * (READ_CAP + 1))
    inventory = discover(Host(str(root)))
    assert inventory.cpu.logical_cpus == 224  # the rest of the host is still there
    for relative in (KSM_RUN, "proc/cmdline", "proc/sys/kernel/hostname"):
        assert f"/{relative}: not a regular file (a FIFO); ignored" in inventory.warnings
    assert any(w.startswith(f"/{NR_HUGEPAGES}: larger than") for w in inventory.warnings)


def test_an_empty_root_is_refused_by_discovery(tmp_path: Path) -> None:
    try:
        discover(Host(str(tmp_path)))
    except HostError as exc:
        assert "neither sys/ nor proc/" in str(exc)
    else:
        raise AssertionError("discovery of an empty root gave an inventory")


def test_an_empty_or_wrong_root_is_a_cli_error(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()  # a directory, but not a host's root
    for command in (["inspect"], ["check"], ["labels"]):
        result = CliRunner().invoke(main, ["--root", str(tmp_path), *command])
        assert result.exit_code == 2, (command, result.output)
        assert "--root" in result.output and "neither sys/ nor proc/" in result.output
        assert "Warnings" not in result.output
