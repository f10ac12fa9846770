"""``capture`` round trip: the packed tree reproduces the inventory taken while packing it."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeagent.capture import LIVE_ONLY_FIELDS, is_secret, write_capture
from nodeagent.cli import main
from nodeagent.discover import discover
from nodeagent.host import Host


def _masked(data: dict) -> dict:
    for dotted in LIVE_ONLY_FIELDS:
        *parents, leaf = dotted.split(".")
        target = data
        for part in parents:
            target = target[part]
        target.pop(leaf, None)
    return data


def _round_trip(host: Host, tmp_path: Path) -> tuple[dict, dict, list[tarfile.TarInfo]]:
    archive_path = tmp_path / "capture.tar.gz"
    summary = write_capture(host, str(archive_path))
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(archive_path) as archive:
        archive.extractall(unpacked, filter="tar")
    again = discover(Host(str(unpacked)))
    with tarfile.open(archive_path) as archive:
        members = archive.getmembers()
    return _masked(summary.inventory.to_dict()), _masked(again.to_dict()), members


@pytest.mark.realhost
def test_capture_of_this_host_reproduces_its_inventory(tmp_path: Path) -> None:
    captured, replayed, members = _round_trip(Host("/"), tmp_path)
    assert replayed == captured
    assert not [m.name for m in members if is_secret("/" + m.name)], "a /proc/<pid> or credential was packed"
    links = [m for m in members if m.issym()]
    assert links and all(not m.linkname.startswith("/") for m in links if m.name.startswith("sys/"))


@pytest.mark.parametrize("name", ["intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "desktop-no-iommu"])
def test_capture_of_a_fixture_host_round_trips(name: str, host_trees, tmp_path: Path) -> None:
    captured, replayed, _ = _round_trip(Host(str(host_trees(name))), tmp_path)
    assert replayed == captured
    assert captured["gpus"] == replayed["gpus"]


def test_secret_paths_are_recognised() -> None:
    assert is_secret("/proc/1234/environ")
    assert is_secret("/proc/self/cmdline")
    assert is_secret("/var/lib/kubelet/pki/kubelet.key")
    assert is_secret("/etc/kubernetes/kubelet.conf")
    assert not is_secret("/proc/cpuinfo")
    assert not is_secret("/sys/kernel/mm/ksm/run")


def test_capture_command_writes_the_archive(host_trees, tmp_path: Path) -> None:
    out = tmp_path / "c.tar.gz"
    result = CliRunner().invoke(main, ["--root", str(host_trees("minimal")), "capture", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    with tarfile.open(out) as archive:
        assert "NODEAGENT-CAPTURE.json" in archive.getnames()
