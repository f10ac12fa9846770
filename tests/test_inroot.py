"""The kernel's in-root resolution (openat2 RESOLVE_IN_ROOT, nodeagent.inroot) and the Host's own
walk give the same answers: the same content, the same absences, the same warnings, the same
inventories. The walk is forced by a Host whose opener is switched off."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inroot import in_root_opener

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
HOSTS = ["intel-2s-8gpu", "arm64-altra", "s390x-lpar", "rt-isolated", "debian12-dev-vm"]


def _kernel_has_openat2() -> bool:
    major, minor = (int(p) for p in os.uname().release.split(".")[:2])
    return (major, minor) >= (5, 6)


def walking(root: Path) -> Host:
    host = Host(str(root))
    host._in_root = False  # the Host's own walk, as where openat2 is missing
    return host


@pytest.fixture
def tree(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_text("this machine's file\n")
    (outside / "dir").mkdir()
    (outside / "dir/x").write_text("outside\n")
    root = tmp_path / "root"
    device = root / "sys/devices/pci0000:00/0000:00:01.0"
    device.mkdir(parents=True)
    (device / "class").write_text("0x030000\n")
    (device / "sub").mkdir()
    (device / "sub/value").write_text("7\n")
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    os.symlink("../../../devices/pci0000:00/0000:00:01.0", root / "sys/bus/pci/devices/0000:00:01.0")
    os.symlink("/sys/devices/pci0000:00", root / "sys/abs-dir")  # absolute: a path of the described host
    os.symlink(str(outside), root / "sys/escape-abs")  # names this machine's directory: must not leave
    os.symlink("../../../../../../../..", root / "sys/escape-up")  # climbs past the top: stays at the root
    os.symlink("loop-b", root / "sys/loop-a")
    os.symlink("loop-a", root / "sys/loop-b")
    os.symlink("missing", root / "sys/dangling")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("fixture\n")
    os.symlink(str(outside / "secret"), root / "etc/abs-file")
    os.symlink("/etc/hostname", root / "etc/inside")
    (root / "proc").mkdir()
    os.mkfifo(root / "proc/fifo")
    (root / "sys/file").write_text("a file, not a directory\n")
    return root


PATHS = [
    "/sys/bus/pci/devices/0000:00:01.0/class", "/sys/bus/pci/devices/0000:00:01.0/sub/value",
    "/sys/abs-dir/0000:00:01.0/class", "/sys/escape-abs/secret", "/sys/escape-abs/dir/x",
    "/sys/escape-up/etc/hostname", "/sys/escape-up/sys/escape-up/etc/hostname", "/sys/loop-a", "/sys/loop-a/x",
    "/sys/dangling", "/sys/dangling/x", "/etc/abs-file", "/etc/inside", "/proc/fifo", "/sys/file/x",
    "/sys/bus/pci/devices/0000:00:01.0/../0000:00:01.0/class", "/nothing/here", "/sys/bus/pci/devices",
]
DIRS = ["/sys/bus/pci/devices/0000:00:01.0", "/sys/abs-dir", "/sys/escape-abs", "/sys/escape-abs/dir",
        "/sys/escape-up", "/sys/loop-a", "/sys/dangling", "/sys/file", "/sys/bus/pci/devices/0000:00:01.0/class",
        "/nothing"]


def test_the_opener_is_there_where_the_kernel_has_openat2(tmp_path: Path) -> None:
    host = Host(str(tmp_path))
    assert (in_root_opener(host.root) is not None) == _kernel_has_openat2()


def test_reads_and_listings_agree_with_the_walk(tree: Path) -> None:
    fast, walk = Host(str(tree)), walking(tree)
    for path in PATHS:
        with fast.recording() as a:
            got = fast.read_text(path)
        with walk.recording() as b:
            want = walk.read_text(path)
        assert (got, a.warnings, a.denied) == (want, b.warnings, b.denied), path
    for path in DIRS:
        assert fast.listdir(path) == walk.listdir(path), path
    for path in PATHS + DIRS + ["/", "/sys/bus/pci/devices/0000:00:01.0/..", "/sys/escape-up"]:
        assert fast.realpath(path) == walk.realpath(path), path
    assert fast.realpath("/sys/escape-up/sys/abs-dir") == "/sys/devices/pci0000:00"
    assert fast._in_root is not False or not _kernel_has_openat2()
    assert fast.read_text("/sys/escape-abs/secret") is None
    assert fast.read_str("/sys/escape-up/etc/hostname") == "fixture"
    assert fast.listdir("/sys/escape-abs") == []


@pytest.mark.parametrize("name", HOSTS)
def test_fixture_inventories_agree(host_trees: Callable[[str], Path], name: str) -> None:
    root = host_trees(name)
    assert discover(Host(str(root))) == discover(walking(root))


def test_a_copy_of_a_host_keeps_reading_after_the_original_is_gone(tree: Path) -> None:
    import copy
    import dataclasses
    import gc

    original = Host(str(tree))
    assert original.read_str("/etc/inside") == "fixture"  # the opener (and its root descriptor) exists now
    shallow, replaced = copy.copy(original), dataclasses.replace(original)
    del original
    gc.collect()
    for _ in range(3):  # descriptors freed meanwhile would be reused by these opens
        for host in (shallow, replaced):
            assert host.read_str("/sys/bus/pci/devices/0000:00:01.0/class") == "0x030000"
            assert host.read_str("/etc/inside") == "fixture"
            assert host.listdir("/sys/bus/pci/devices") == ["0000:00:01.0"]
