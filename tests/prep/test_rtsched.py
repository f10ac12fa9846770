"""spec.kernel.realtimeScheduling: kernel.sched_rt_runtime_us=-1 now and in /etc/sysctl.d, journaled and revertible
(the value KubeVirt's virt-handler reads before it labels a node kubevirt.io/realtime)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.prep.apply import revert
from nodeagent.profile import ProfileError
from tests.prep.helpers import applied, journal, planned, profile_doc
from tests.support.trees import put_file, snapshot

RT = {"kernel": {"realtimeScheduling": True}}
PROC = "proc/sys/kernel/sched_rt_runtime_us"
DROPIN = "etc/sysctl.d/90-nodeagent-realtime.conf"


def _host(make_host, value: str = "950000"):  # type: ignore[no-untyped-def]
    host, _, root = make_host()
    put_file(root, PROC, value + "\n")  # the kernel's default: RT tasks throttled to 95 %
    return host, root


def test_plan_apply_converge_revert(make_host) -> None:  # type: ignore[no-untyped-def]
    host, root = _host(make_host)
    before = snapshot(root)
    _, plan = planned(host, RT)
    assert [(c.subsystem, c.target, c.current, c.desired) for c in plan.changes if c.subsystem == "realtime"] == [
        ("realtime", "kernel.sched_rt_runtime_us", 950000, -1),
        ("realtime", "/etc/sysctl.d/90-nodeagent-realtime.conf", "absent", "present")]
    assert applied(host, RT).exit_code == 0
    assert (root / PROC).read_text().strip() == "-1"
    assert "kernel.sched_rt_runtime_us = -1\n" in (root / DROPIN).read_text()
    entries = [e for e in (journal(root) or {})["entries"] if e.get("subsystem") == "realtime"]
    assert len(entries) == 2 and all(e["status"] == "applied" for e in entries)  # journaled, old values kept
    _, again = planned(host, RT)
    assert not [c for c in again.changes if c.subsystem == "realtime"]  # converged
    assert revert(host).exit_code == 0
    assert (root / PROC).read_text().strip() == "950000"
    assert not (root / DROPIN).exists()
    after = snapshot(root)
    assert {k: v for k, v in after.items() if "nodeagent" not in k} == {
        k: v for k, v in before.items() if "nodeagent" not in k}


def test_already_unthrottled_only_persists(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _ = _host(make_host, "-1")
    _, plan = planned(host, RT)
    assert [c.target for c in plan.changes if c.subsystem == "realtime"] == [
        "/etc/sysctl.d/90-nodeagent-realtime.conf"]


def test_unreadable_value_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host()  # no /proc/sys/kernel/sched_rt_runtime_us in this tree
    _, plan = planned(host, RT)
    assert [r.target for r in plan.refusals] == ["kernel.sched_rt_runtime_us"]
    assert "cannot read back and restore" in plan.refusals[0].reason


def test_not_asked_nothing_planned(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _ = _host(make_host)
    _, plan = planned(host, {"kernel": {"realtimeScheduling": False}})
    assert not [c for c in plan.changes if c.subsystem == "realtime"]


def test_a_non_boolean_names_the_field() -> None:
    import yaml

    from nodeagent.profile import parse_profile_text

    with pytest.raises(ProfileError, match=r"spec\.kernel\.realtimeScheduling"):
        parse_profile_text(yaml.safe_dump(profile_doc({"kernel": {"realtimeScheduling": "yes please"}})))


def test_dropin_path_is_the_one_documented() -> None:
    assert Path(DROPIN).name == "90-nodeagent-realtime.conf"
