"""Applying on emulated hosts: verification, short allocations, fault injection, journal, lock, revert.

"Exactly as it was" is checked on the whole tree: every file's content and every symlink's target.
"""

from __future__ import annotations

import errno
import json
from typing import Any

import pytest

from nodeagent.discover.prep_state import discover_prep_state
from nodeagent.host import Host, WriteRecord
from nodeagent.owned import LOCK_PATH
from nodeagent.prep.apply import revert
from tests.prep.helpers import applied, journal, planned, read
from tests.support.faults import clear_faults, fail_writes, fault
from tests.support.trees import TreeSpec, snapshot

N0_2M = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"
N0_1G = "/sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages"
KSM_RUN = "/sys/kernel/mm/ksm/run"

EVERYTHING = {
    "hugepages": {"pages": [{"size": "2Mi", "count": 64, "numaNode": 0}, {"size": "2Mi", "count": 32, "numaNode": 1}]},
    "ksm": {"enabled": True, "pagesToScan": 1000, "sleepMillisecs": 10},
    "cpu": {"reserved": "0,4", "isolated": "1-3,5-7", "governor": "performance"},
    "kernel": {"additionalArgs": ["nosoftlockup"]},
}


def test_apply_then_revert_restores_the_whole_tree(make_host) -> None:  # type: ignore[no-untyped-def]
    host, emulator, root = make_host(TreeSpec())
    before = snapshot(root)
    result = applied(host, EVERYTHING, boot=False)
    assert result.exit_code == 3, result.failure  # the boot arguments wait for a reboot
    assert result.reboot_required
    assert read(root, N0_2M) == "64" and read(root, KSM_RUN) == "1"
    assert read(root, "/sys/devices/system/cpu/cpufreq/policy1/scaling_governor") == "performance"
    assert read(root, "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor") == "powersave"
    assert emulator.commands == [["update-grub"]]
    entries = journal(root)["entries"]  # type: ignore[index]
    assert all(e["status"] == "applied" for e in entries)
    assert revert(host).exit_code == 0
    assert emulator.commands == [["update-grub"], ["update-grub"]]
    assert snapshot(root) == before
    assert journal(root) is None


def test_second_apply_writes_nothing_and_revert_goes_back_to_before_the_first(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    before = snapshot(root)
    spec = {"hugepages": {"pages": [{"size": "2Mi", "count": 10, "numaNode": 0}]}}
    assert applied(host, spec).exit_code == 0
    assert applied(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 20, "numaNode": 0}]}}).exit_code == 0
    entry, = journal(root)["entries"]  # type: ignore[index]
    assert (entry["old"], entry["new"]) == (0, 20)  # the original value is kept across applies
    with host.recording() as since:
        assert applied(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 20, "numaNode": 0}]}}).exit_code == 0
    assert since.stats.writes == 0
    assert revert(host).exit_code == 0
    assert snapshot(root) == before


def test_dry_run_records_the_writes_and_touches_nothing(make_host) -> None:  # type: ignore[no-untyped-def]
    _, emulator, root = make_host(TreeSpec())
    host = emulator.install(Host(str(root), dry_run=True))
    before = snapshot(root)
    result = applied(host, EVERYTHING)
    assert result.dry_run and result.exit_code in (0, 3)
    assert f"write {N0_2M} = 64" in result.writes
    assert "run update-grub" in result.writes
    assert snapshot(root) == before and emulator.commands == []


def test_journal_is_on_disk_before_each_write(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    seen: list[str] = []

    def check(record: WriteRecord) -> None:
        data = json.loads((root / "var/lib/nodeagent/journal.json").read_text())
        applying = [e for e in data["entries"] if e["status"] == "applying"]
        assert len(applying) == 1, "exactly the change being made is announced"
        seen.append(applying[0]["target"])

    host.write_observers.append(check)
    assert applied(host, EVERYTHING).exit_code == 3
    assert "node0 2Mi" in seen and "ksm run" in seen


def test_an_unjournaled_write_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    from nodeagent.host import HostError
    from nodeagent.prep.journal import JournalGuard

    host, _, _ = make_host(TreeSpec())
    host.write_observers.append(JournalGuard())
    with pytest.raises(HostError, match="unjournaled"):
        host.write(KSM_RUN, "1")


def test_a_held_lock_refuses_the_apply(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    before = snapshot(root)
    with Host(str(root)).lock(LOCK_PATH):
        result = applied(host, EVERYTHING)
    assert result.exit_code == 2 and "locked" in (result.failure or "")
    assert snapshot(root) == before


# --- short allocations -------------------------------------------------------------------------


def test_short_2m_allocation_is_rolled_back(make_host) -> None:  # type: ignore[no-untyped-def]
    host, emulator, root = make_host(TreeSpec(capacity={(0, 2048): 40}))
    before = snapshot(root)
    result = applied(host, EVERYTHING)
    assert result.exit_code == 1
    assert "allocated 40 of 64 pages" in (result.failure or "")
    assert emulator.compactions >= 1  # retried after compaction
    assert snapshot(root) == before and journal(root) is None


def test_short_2m_allocation_kept_with_allow_partial(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(capacity={(0, 2048): 40}))
    result = applied(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 64, "numaNode": 0}]}},
                     allow_partial=True)
    assert result.exit_code == 0
    assert [o.status for o in result.outcomes] == ["partial"]
    assert read(root, N0_2M) == "40"


def test_compaction_retry_recovers_a_short_allocation(make_host) -> None:  # type: ignore[no-untyped-def]
    host, emulator = make_host(TreeSpec(capacity={(0, 2048): 40}), compaction_gain=10)[:2]
    result = applied(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 64, "numaNode": 0}]}},
                     allocation_timeout_s=5)
    assert result.exit_code == 0
    assert emulator.compactions == 3  # 40 → 50 → 60 → 70: three compactions


def test_retry_loop_is_bounded_by_the_timeout(make_host) -> None:  # type: ignore[no-untyped-def]
    from nodeagent.prep.hugepages import AllocationPolicy, ShortAllocationError, set_pages

    host, _, _ = make_host(TreeSpec(capacity={(0, 2048): 1}))
    _, plan = planned(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 8, "numaNode": 0}]}})
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = AllocationPolicy(timeout_s=10, interval_s=1, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(ShortAllocationError) as caught:
        set_pages(host, plan.changes[0], policy)
    assert caught.value.got == 1 and 10 <= caught.value.attempts <= 12
    assert now[0] >= 10


def test_1g_short_at_runtime_moves_to_the_boot_line(make_host) -> None:  # type: ignore[no-untyped-def]
    host, emulator, root = make_host(TreeSpec(nodes=2, capacity={(0, 1048576): 1, (1, 1048576): 1}))
    result = applied(host, {"hugepages": {"pages": [{"size": "1Gi", "count": 4}]}})
    assert result.exit_code == 3 and result.reboot_required
    assert {o.status for o in result.outcomes if o.change.subsystem == "hugepages"} == {"deferred-to-boot"}
    assert read(root, N0_1G) == "0"  # rolled back at runtime
    assert "hugepagesz=1G hugepages=0:2,1:2" in read(root, "/etc/default/grub.d/90-nodeagent.cfg")
    assert emulator.commands == [["update-grub"]]
    state = discover_prep_state(host, read(root, "/proc/cmdline"))
    assert state.reboot_required and state.pending_boot_args == ["hugepagesz=1G", "hugepages=0:2,1:2"]
    # After the reboot the kernel reserved them: converged, and the size stays on the boot line.
    (root / "proc/cmdline").write_text(read(root, "/proc/cmdline") + " hugepagesz=1G hugepages=0:2,1:2\n")
    for node in (0, 1):
        (root / f"sys/devices/system/node/node{node}/hugepages/hugepages-1048576kB/nr_hugepages").write_text("2\n")
    _, plan = planned(host, {"hugepages": {"pages": [{"size": "1Gi", "count": 4}]}})
    assert plan.changes == [] and plan.pending_reboot_args == []
    assert not discover_prep_state(host, read(root, "/proc/cmdline")).reboot_required


def test_1g_boot_line_uses_the_total_on_old_kernels(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(nodes=2, release="5.4.0-150-generic", capacity={(0, 1048576): 0,
                                                                                        (1, 1048576): 0}))
    result = applied(host, {"hugepages": {"pages": [{"size": "1Gi", "count": 4}]}})
    assert result.exit_code == 3
    assert "hugepagesz=1G hugepages=4\"" in read(root, "/etc/default/grub.d/90-nodeagent.cfg")


# --- fault injection -------------------------------------------------------------------------

FAULT_PATHS = [
    N0_2M,
    "/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages",
    "/sys/kernel/mm/ksm/pages_to_scan",
    "/sys/kernel/mm/ksm/sleep_millisecs",
    KSM_RUN,
    "/sys/devices/system/cpu/cpufreq/policy5/scaling_governor",
    "/etc/nodeagent/profile.yaml",
    "/etc/default/grub.d/90-nodeagent.cfg",
]
ERRNOS = [errno.EBUSY, errno.EINVAL, errno.EACCES, errno.ENOENT]


@pytest.mark.parametrize("error", ERRNOS, ids=lambda e: errno.errorcode[e])
@pytest.mark.parametrize("path", FAULT_PATHS, ids=lambda p: p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1])
def test_a_refused_write_rolls_everything_back(make_host, path: str, error: int) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    before = snapshot(root)
    fail_writes(host, path, error)
    result = applied(host, EVERYTHING, boot=False)
    assert result.exit_code == 1
    assert errno.errorcode[error] in (result.failure or "")
    assert path in (result.failure or "")
    assert any(o.status == "restored" for o in result.outcomes) or result.outcomes[0].status == "failed"
    assert not any(o.status == "restore-failed" for o in result.outcomes)
    assert snapshot(root) == before
    assert journal(root) is None


@pytest.mark.parametrize("error", ERRNOS, ids=lambda e: errno.errorcode[e])
def test_a_failed_apply_keeps_the_earlier_journal(make_host, error: int) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    assert applied(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 8, "numaNode": 0}]}}).exit_code == 0
    before = snapshot(root)
    earlier = journal(root)
    fail_writes(host, KSM_RUN, error)
    result = applied(host, EVERYTHING)
    assert result.exit_code == 1
    assert journal(root) == earlier
    assert snapshot(root) == before
    assert revert(host).exit_code == 0
    assert read(root, N0_2M) == "0"


def test_a_failing_bootloader_command_rolls_back(make_host) -> None:  # type: ignore[no-untyped-def]
    host, emulator, root = make_host(TreeSpec())
    emulator.fail_commands["update-grub"] = 1
    before = snapshot(root)
    result = applied(host, EVERYTHING)
    assert result.exit_code == 1 and "update-grub failed" in (result.failure or "")
    assert snapshot(root) == before


def test_a_restore_that_fails_stays_journaled(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    calls: dict[str, int] = {}

    def fail_second_ksm_write(record: WriteRecord) -> None:
        if record.path.endswith("pages_to_scan"):
            calls["n"] = calls.get("n", 0) + 1
            if calls["n"] >= 2:  # the apply's write succeeds, the restore's write fails
                raise OSError(errno.EIO, "I/O error", record.path)

    faults = fault(host, fail_second_ksm_write), fail_writes(host, KSM_RUN, errno.EBUSY)
    result = applied(host, EVERYTHING)
    assert result.exit_code == 1
    assert any(o.status == "restore-failed" for o in result.outcomes)
    keys = [e["target"] for e in journal(root)["entries"]]  # type: ignore[index]
    assert keys == ["ksm pages_to_scan"]
    clear_faults(host, *faults)
    assert revert(host).exit_code == 0
    assert read(root, "/sys/kernel/mm/ksm/pages_to_scan") == "100"


def test_revert_exit_codes(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec())
    assert revert(host).exit_code == 0  # nothing to revert
    assert applied(host, {"ksm": {"enabled": True}}).exit_code == 0
    fail_writes(host, KSM_RUN, errno.EBUSY)
    result = revert(host)
    assert result.exit_code == 1 and result.failed


def test_kubelet_restart_pending_until_kubelet_restarts(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    (root / "proc/4242").mkdir()
    (root / "proc/4242/comm").write_text("kubelet\n")
    result = applied(host, {"hugepages": {"pages": [{"size": "2Mi", "count": 8, "numaNode": 0}]}})
    assert result.exit_code == 3 and result.kubelet_restart_required
    data: Any = journal(root)
    since = data["kubelet_restart_required_at"]
    cmdline = read(root, "/proc/cmdline")
    assert discover_prep_state(host, cmdline).kubelet_restart_required
    assert discover_prep_state(host, cmdline, kubelet_started_at=since - 5).kubelet_restart_required
    assert not discover_prep_state(host, cmdline, kubelet_started_at=since + 5).kubelet_restart_required
    assert discover_prep_state(host, cmdline).journal_changes == 1
