"""The Host seam: root confinement, absent vs garbled files, and the write-side hooks."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from nodeagent.host import Host, HostError, HostRecord, HostTrace, WriteRecord
from tests.support.faults import fail_writes


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sys/devices/pci0000:00/0000:00:01.0").mkdir(parents=True)
    (tmp_path / "sys/devices/pci0000:00/0000:00:01.0/class").write_text("0x030000\n")
    (tmp_path / "sys/bus/pci/devices").mkdir(parents=True)
    os.symlink("../../../devices/pci0000:00/0000:00:01.0", tmp_path / "sys/bus/pci/devices/0000:00:01.0")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/nr").write_text("12x\n")
    (tmp_path / "proc/list").write_text("0-\n")
    return tmp_path


def test_relative_links_resolve_inside_the_root(tree: Path) -> None:
    host = Host(str(tree))
    assert host.read_str("/sys/bus/pci/devices/0000:00:01.0/class") == "0x030000"
    assert host.realpath("/sys/bus/pci/devices/0000:00:01.0") == "/sys/devices/pci0000:00/0000:00:01.0"


def test_absolute_links_are_taken_relative_to_the_root(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_text("host file\n")
    (tree / "etc").mkdir()
    # An absolute target names a path of the *described* host, never of this machine.
    os.symlink(str(outside / "secret"), tree / "etc/abs")
    os.symlink("/proc/nr", tree / "etc/inside")
    host = Host(str(tree))
    assert host.read_text("/etc/abs") is None
    assert host.read_str("/etc/inside") == "12x"


def test_dotdot_cannot_climb_above_the_root(tree: Path) -> None:
    (tree / "etc").mkdir()
    os.symlink("../../../../../../../etc/hostname", tree / "etc/escape")
    (tree / "etc/hostname").write_text("fixture\n")
    host = Host(str(tree))
    assert host.read_str("/etc/escape") == "fixture"
    assert host.read_str("/../../../proc/nr") == "12x"


def test_symlink_loops_are_reported_absent(tree: Path) -> None:
    os.symlink("b", tree / "a")
    os.symlink("a", tree / "b")
    assert Host(str(tree)).read_text("/a") is None


def test_absent_file_is_a_fact_not_an_error(tree: Path) -> None:
    host = Host(str(tree))
    with host.recording() as record:
        assert host.read_text("/sys/kernel/mm/ksm/run") is None
        assert host.read_int("/sys/kernel/mm/ksm/run") is None
        assert host.listdir("/sys/kernel/iommu_groups") == []
    assert record.warnings == []


def test_garbled_values_warn_naming_the_file(tree: Path) -> None:
    host = Host(str(tree))
    with host.recording() as record:
        assert host.read_int("/proc/nr") is None
        assert host.read_cpulist("/proc/list") is None
    assert [w.path for w in record.warnings] == ["/proc/nr", "/proc/list"]
    assert "integer" in record.warnings[0].message


def test_missing_root_is_refused() -> None:
    with pytest.raises(HostError, match="no such directory"):
        Host("/nonexistent/root")


def test_dry_run_records_and_writes_nothing(tree: Path) -> None:
    host = Host(str(tree), dry_run=True)
    with host.recording() as record:
        host.write("/proc/nr", "5")
        host.write_file("/etc/new.cfg", "x")
    assert (tree / "proc/nr").read_text() == "12x\n"
    assert not (tree / "etc/new.cfg").exists()
    assert [w.path for w in record.writes] == ["/proc/nr", "/etc/new.cfg"]
    assert record.stats.writes == 0


def test_observers_run_before_the_write_and_faults_stop_it(tree: Path) -> None:
    host = Host(str(tree))
    seen: list[tuple[str, str]] = []
    host.write_observers.append(lambda r: seen.append((r.path, (tree / "proc/nr").read_text())))
    host.write("/proc/nr", "7")
    assert seen == [("/proc/nr", "12x\n")]
    assert (tree / "proc/nr").read_text() == "7"
    fail_writes(host, "/proc/nr", errno.EBUSY)
    with pytest.raises(OSError) as raised:
        host.write("/proc/nr", "9")
    assert raised.value.errno == errno.EBUSY
    assert (tree / "proc/nr").read_text() == "7"


def test_emulators_replace_the_real_write(tree: Path) -> None:
    host = Host(str(tree))
    handled: list[WriteRecord] = []
    host.interceptors.append(lambda h, r: handled.append(r) or True)
    host.write("/sys/bus/pci/drivers_probe", "0000:00:01.0")
    assert handled[0].value == "0000:00:01.0"
    assert not (tree / "sys/bus/pci/drivers_probe").exists()


def test_atomic_file_write_and_remove(tree: Path) -> None:
    host = Host(str(tree))
    host.write_file("/etc/default/grub.d/90-nodeagent.cfg", "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX x\"\n")
    assert (tree / "etc/default/grub.d/90-nodeagent.cfg").read_text().endswith('x"\n')
    assert not [p for p in (tree / "etc/default/grub.d").iterdir() if p.name.startswith(".nodeagent-")]
    host.remove("/etc/default/grub.d/90-nodeagent.cfg")
    assert not (tree / "etc/default/grub.d/90-nodeagent.cfg").exists()


def test_lock_is_exclusive(tree: Path) -> None:
    first, second = Host(str(tree)), Host(str(tree))
    with first.lock("/var/lib/nodeagent/lock"), pytest.raises(HostError, match="locked"), \
            second.lock("/var/lib/nodeagent/lock"):
        pass
    with second.lock("/var/lib/nodeagent/lock"):
        pass


def test_commands_never_run_on_this_machine_under_a_fixture_root(tree: Path) -> None:
    with pytest.raises(HostError, match="live host"):
        Host(str(tree)).run(["modprobe", "vfio-pci"])


def test_live_sources_are_skipped_under_a_fixture_root(tree: Path) -> None:
    host = Host(str(tree))
    with host.recording() as record:
        assert host.live_source("netlink") is False
    assert "netlink" in record.skipped
    assert Host("/").live_source("netlink") is True


def test_trace_records_what_was_read_listed_and_probed(tree: Path) -> None:
    host = Host(str(tree))
    trace = HostTrace()
    with host.recording(HostRecord(trace=trace)):
        host.read_text("/proc/nr")
        host.listdir("/sys/bus/pci/devices")
        host.exists("/dev/kvm")
    assert trace.files == {"/proc/nr": b"12x\n"}
    assert trace.dirs == {"/sys/bus/pci/devices": ["0000:00:01.0"]}
    assert "/dev/kvm" in trace.probes


def test_reads_are_counted(tree: Path) -> None:
    host = Host(str(tree))
    with host.recording() as record:
        host.read_text("/proc/nr")
        host.read_text("/proc/absent")
    assert record.stats.reads == 2


def test_a_mounted_live_root_can_be_declared_live(tree: Path) -> None:
    mounted = Host(str(tree), live=True)
    assert mounted.is_live and mounted.live_source("netlink")
    assert mounted.read_str("/proc/nr") == "12x"  # paths still resolve under the root
    assert not Host("/", live=False).is_live


@pytest.mark.realhost
def test_commands_on_a_mounted_live_root_run_inside_it(tree: Path) -> None:
    # The tree has no /bin/true: a command chroot-ed into it cannot find this machine's binary.
    result = Host(str(tree), live=True).run(["true"])
    assert result.returncode == 127
    assert "chroot" in result.stderr
    assert Host("/").run(["true"]).returncode == 0


def test_records_nest_and_stay_on_their_thread(tree: Path) -> None:
    import threading

    host = Host(str(tree))
    with host.recording() as outer:
        with host.recording() as inner:
            host.read_int("/proc/nr")
        other = threading.Thread(target=lambda: host.read_int("/proc/list"))
        other.start()
        other.join()
    assert [w.path for w in inner.warnings] == [w.path for w in outer.warnings] == ["/proc/nr"]
    assert outer.stats.reads == 1


def test_a_fresh_discovery_does_not_repeat_warnings_of_files_since_fixed(tree: Path) -> None:
    from nodeagent.discover import discover

    (tree / "sys/kernel/mm/transparent_hugepage").mkdir(parents=True)
    (tree / "sys/kernel/mm/ksm").mkdir(parents=True)
    (tree / "sys/kernel/mm/ksm/run").write_text("x\n")
    host = Host(str(tree))
    assert any("/sys/kernel/mm/ksm/run" in w for w in discover(host).warnings)
    (tree / "sys/kernel/mm/ksm/run").write_text("0\n")
    assert not any("/sys/kernel/mm/ksm/run" in w for w in discover(host).warnings)


def test_relative_paths_are_refused_even_once_the_root_directory_is_cached(tree: Path) -> None:
    (tree / "top").write_text("x\n")
    host = Host(str(tree))
    assert host.read_str("/top") == "x"  # the root directory is now resolved and cached
    for relative in ("top", "", "proc/nr"):
        with pytest.raises(HostError, match="absolute"):
            host.read_text(relative)


def test_resolutions_are_forgotten_after_a_write_that_moves_a_link(tree: Path) -> None:
    # A PCI bind moves the driver link: a read after the write must follow the new link.
    for name in ("nvidia", "vfio-pci"):
        (tree / f"sys/bus/pci/drivers/{name}").mkdir(parents=True)
        (tree / f"sys/bus/pci/drivers/{name}/new_id").write_text(f"{name}\n")
    link = tree / "sys/devices/pci0000:00/0000:00:01.0/driver"
    os.symlink("../../../bus/pci/drivers/nvidia", link)
    host = Host(str(tree))

    def rebind(_host: Host, record: WriteRecord) -> bool:
        link.unlink()
        os.symlink("../../../bus/pci/drivers/vfio-pci", link)
        return True

    assert host.read_str("/sys/bus/pci/devices/0000:00:01.0/driver/new_id") == "nvidia"
    host.interceptors.append(rebind)
    host.write("/sys/bus/pci/devices/0000:00:01.0/driver/unbind", "0000:00:01.0")
    assert host.read_str("/sys/bus/pci/devices/0000:00:01.0/driver/new_id") == "vfio-pci"
