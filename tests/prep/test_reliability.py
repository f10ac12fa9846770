"""Garbled values, malformed journals, KSM unmerge on revert, created directories, the memory floor (issue 12).

Run on emulated hosts (tests/support/trees.py); "as it was" is the whole tree's snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.host import Host
from nodeagent.owned import JOURNAL_PATH
from nodeagent.prep.apply import revert
from nodeagent.prep.journal import Journal, JournalError
from tests.prep.helpers import applied, journal, planned, read
from tests.support.trees import TreeSpec, snapshot

N0_2M = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"
KSM_RUN = "/sys/kernel/mm/ksm/run"
PAGES = {"hugepages": {"pages": [{"size": "2Mi", "count": 16, "numaNode": 0}]}}


# --- item 2: a value that cannot be read is never changed --------------------------------------


def test_a_garbled_page_count_is_refused_naming_the_file(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    (root / N0_2M.lstrip("/")).write_text("abc\n")
    before = snapshot(root)
    _, plan = planned(host, PAGES)
    assert not plan.changes
    refusal, = plan.refusals
    assert refusal.target == "node0 2Mi" and N0_2M in refusal.reason and "cannot be read" in refusal.reason
    result = applied(host, PAGES)
    assert result.exit_code == 2 and N0_2M in (result.failure or "")
    assert snapshot(root) == before and journal(root) is None


def test_a_denied_page_count_is_refused(make_host, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """EACCES (the tests run as root, which reads any mode: the Host's read is made to fail as it would)."""
    host, _, root = make_host(TreeSpec())
    original = Host.read_text

    def denied(self: Host, path: str) -> str | None:
        if path == N0_2M:
            self.note_denied(path)
            return None
        return original(self, path)

    monkeypatch.setattr(Host, "read_text", denied)
    before = snapshot(root)
    _, plan = planned(host, PAGES)
    assert [r.target for r in plan.refusals] == ["node0 2Mi"]
    assert applied(host, PAGES).exit_code == 2
    assert snapshot(root) == before


def test_a_value_that_turns_unreadable_after_planning_is_not_changed(make_host) -> None:  # type: ignore[no-untyped-def]
    from nodeagent.prep.apply import execute

    host, _, root = make_host(TreeSpec())
    before = snapshot(root)
    spec = {"hugepages": {"pages": [{"size": "2Mi", "count": 8, "numaNode": 1},
                                    {"size": "2Mi", "count": 16, "numaNode": 0}]}}
    ctx, plan = planned(host, spec)
    assert len(plan.changes) == 2
    (root / N0_2M.lstrip("/")).write_text("garbage\n")  # between plan and apply (EIO reads the same way)
    result = execute(plan, ctx, host, sleep=lambda _: None)
    assert result.exit_code == 1
    assert "never changes a value it cannot read back and restore" in (result.failure or "")
    assert read(root, N0_2M) == "garbage"  # never written
    after = snapshot(root)
    after[N0_2M.lstrip("/")] = before[N0_2M.lstrip("/")]
    assert after == before  # node1's change was rolled back


def test_an_unreadable_ksm_run_is_refused_not_taken_for_absent(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    (root / KSM_RUN.lstrip("/")).write_text("x\n")
    for enabled in (True, False):
        _, plan = planned(host, {"ksm": {"enabled": enabled}})
        assert [r.target for r in plan.refusals] == ["ksm"], plan.refusals
        assert KSM_RUN in plan.refusals[0].reason


def test_revert_never_reports_restored_for_an_entry_with_no_old_value(make_host) -> None:  # type: ignore[no-untyped-def]
    """A journal from before this check: hugepages planned from an unreadable count, old null."""
    host, _, root = make_host(TreeSpec())
    assert applied(host, PAGES).exit_code == 0
    data = journal(root)
    data["entries"][0]["old"] = None  # type: ignore[index]
    (root / JOURNAL_PATH.lstrip("/")).write_text(json.dumps(data))
    result = revert(host)
    assert result.exit_code == 1 and result.restored == []
    assert result.failed == ["journal entry 1: old is null, not a page count; kept in the journal, not restored "
                             "(fix or remove it by hand)"]
    assert read(root, N0_2M) == "16" and journal(root)["entries"] == data["entries"]  # type: ignore[index]


# --- item 4: malformed journal entries ---------------------------------------------------------

MALFORMED = [7, {"key": "x", "target": "t", "action": "attr", "path": None, "old": "1"},
             {"key": "hugepages:" + N0_2M, "target": "node0 2Mi", "action": "hugepages", "path": N0_2M,
              "old": "abc"}]


def _journal_with(root: Path, entries: list[object]) -> None:
    path = root / JOURNAL_PATH.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "profile": "p", "entries": entries}))


def test_malformed_entries_are_named_kept_and_the_valid_ones_reverted(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    before = snapshot(root)
    assert applied(host, {"ksm": {"enabled": True}}).exit_code == 0
    assert read(root, KSM_RUN) == "1"
    valid = journal(root)["entries"]  # type: ignore[index]
    _journal_with(root, [MALFORMED[0], *valid, *MALFORMED[1:]])
    first = revert(host)
    assert first.exit_code == 1
    assert "ksm run: back to '0'" in first.restored and len(first.restored) == len(valid)
    last = len(valid) + 3
    assert [f.split(":", 1)[0] for f in first.failed] == [f"journal entry {last}", f"journal entry {last - 1}",
                                                          "journal entry 1"]
    assert "path is null" in first.failed[1] and "old is 'abc', not a page count" in first.failed[0]
    assert "not an entry object: 7" in first.failed[2]
    assert read(root, KSM_RUN) == "0"
    assert journal(root)["entries"] == MALFORMED  # type: ignore[index]
    # Rerunning is stable: the same report, nothing else touched, no traceback.
    second = revert(host)
    def reasons(failed: list[str]) -> list[str]:
        return [f.split(": ", 1)[1] for f in failed]

    assert (second.exit_code, second.restored, reasons(second.failed)) == (1, [], reasons(first.failed))
    assert [f.split(":", 1)[0] for f in second.failed] == ["journal entry 3", "journal entry 2", "journal entry 1"]
    state = snapshot(root)
    del state[JOURNAL_PATH.lstrip("/")]
    assert state == before


def test_apply_refuses_a_journal_with_a_malformed_entry(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    _journal_with(root, MALFORMED)
    before = snapshot(root)
    result = applied(host, PAGES)
    assert result.exit_code == 2
    assert "3 malformed entries (entry 1: not an entry object: 7; entry 2: path is null" in (result.failure or "")
    assert snapshot(root) == before
    with pytest.raises(JournalError, match="entry 3: old is 'abc', not a page count"):
        Journal.load(host)


def test_a_directory_at_the_journal_path_is_an_error(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    (root / JOURNAL_PATH.lstrip("/")).mkdir(parents=True)
    result = revert(host)
    assert result.exit_code == 1 and "is a directory, not a journal" in result.message


def test_the_cli_revert_lists_malformed_entries_without_a_traceback(make_host) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from nodeagent.cli import main

    _, _, root = make_host(TreeSpec())
    _journal_with(root, MALFORMED)
    result = CliRunner().invoke(main, ["--root", str(root), "revert", "--yes"])
    assert result.exit_code == 1, result.output
    assert "journal entry 1: not an entry object: 7" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_reconciler_treats_a_prep_exception_as_a_failed_prep() -> None:
    from types import SimpleNamespace

    from nodeagent.daemon.reconcile import Reconciler

    class Exploding:
        def run(self, *args: object, **kwargs: object) -> None:
            raise KeyError("path")

    fake = SimpleNamespace(options=SimpleNamespace(read_only=False), prep=Exploding(),
                           stop=SimpleNamespace(is_set=lambda: False))
    loaded = SimpleNamespace(name="p")
    outcome = Reconciler._prep(fake, loaded, None, None)  # type: ignore[arg-type]
    assert outcome.state == "failed" and "KeyError" in outcome.message


# --- item 10: KSM unmerge, created directories, the hard floor ---------------------------------


def test_reverting_ksm_on_unmerges_before_stopping(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    assert applied(host, {"ksm": {"enabled": True}}).exit_code == 0
    assert read(root, KSM_RUN) == "1"
    with host.recording() as record:
        assert revert(host).exit_code == 0
    assert [w.value for w in record.writes if w.path == KSM_RUN] == ["2", "0"]
    assert read(root, KSM_RUN) == "0"


def test_reverting_ksm_off_starts_it_again_without_unmerging(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(ksm={"run": 1, "pages_to_scan": 100, "sleep_millisecs": 20,
                                            "pages_shared": 3, "pages_sharing": 7}))
    assert applied(host, {"ksm": {"enabled": False}}).exit_code == 0
    with host.recording() as record:
        assert revert(host).exit_code == 0
    assert [w.value for w in record.writes if w.path == KSM_RUN] == ["1"]
    assert read(root, KSM_RUN) == "1"


def test_revert_removes_the_directories_apply_created(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    assert not (root / "etc/nodeagent").exists()
    assert applied(host, PAGES, boot=False).exit_code == 0  # installs /etc/nodeagent/profile.yaml
    entry = next(e for e in journal(root)["entries"] if e["path"] == "/etc/nodeagent/profile.yaml")  # type: ignore[index]
    assert entry["created_dirs"] == ["/etc/nodeagent"]
    assert revert(host).exit_code == 0
    assert not (root / "etc/nodeagent").exists()


def test_a_directory_someone_filled_meanwhile_stays(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec())
    assert applied(host, PAGES, boot=False).exit_code == 0
    (root / "etc/nodeagent/notes.txt").write_text("mine\n")
    assert revert(host).exit_code == 0
    assert (root / "etc/nodeagent/notes.txt").read_text() == "mine\n"


def test_reserve_host_memory_zero_keeps_the_hard_floor(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(node_mem_kb=4 * 1024 * 1024))  # 4 GiB per node
    spec = {"hugepages": {"reserveHostMemory": {"percent": 0, "minimum": 0},
                          "pages": [{"size": "2Mi", "count": 1800, "numaNode": 0}]}}  # 3.5 GiB of 4
    _, plan = planned(host, spec)
    refusal, = plan.refusals
    assert "below the floor of 1.0 GiB (max(0%, 0.0 GiB, the hard floor of 1.0 GiB))" in refusal.reason
    spec["hugepages"]["pages"][0]["count"] = 1500  # type: ignore[index]  # 2.9 GiB: leaves 1.1 GiB
    _, plan = planned(host, spec)
    assert not plan.refusals and len(plan.changes) == 1


def test_a_rolled_back_apply_removes_the_directories_it_created(make_host) -> None:  # type: ignore[no-untyped-def]
    import errno

    from tests.support.faults import fail_writes

    host, _, root = make_host(TreeSpec())
    before = snapshot(root)
    fail_writes(host, "90-nodeagent.cfg", errno.EROFS)  # the drop-in, written after the installed profile
    spec = {**PAGES, "kernel": {"additionalArgs": ["nosoftlockup"]}}
    result = applied(host, spec, boot=False)
    assert result.exit_code == 1, result.failure
    assert any(o.status == "restored" and o.change.path == "/etc/nodeagent/profile.yaml" for o in result.outcomes)
    assert not (root / "etc/nodeagent").exists()
    assert snapshot(root) == before
