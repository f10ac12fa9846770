"""spec.rebootStrategy: kured — kured's sentinel is written when applied changes need a reboot, journaled,
removed by revert, and not written again once the node has booted what was asked."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nodeagent.prep.apply import revert
from nodeagent.prep.model import Effect
from nodeagent.profile import ProfileError, parse_profile_text
from tests.prep.helpers import applied, journal, planned, profile_doc
from tests.support.trees import TreeSpec, snapshot

ISOLATE = {"cpu": {"reserved": "0,4", "isolated": "1-3,5-7"}}
KURED = {**ISOLATE, "rebootStrategy": "kured"}
SENTINEL = "var/run/reboot-required"


def _tree(make_host, cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet"):  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2, cmdline=cmdline))
    return host, root


def test_kured_sentinel_planned_after_the_boot_arguments_applied_and_reverted(make_host) -> None:  # type: ignore[no-untyped-def]
    host, root = _tree(make_host)
    before = snapshot(root)
    _, plan = planned(host, KURED)
    assert [c.subsystem for c in plan.changes][-2:] == ["bootargs", "reboot"]
    assert plan.changes[-2].effect is Effect.REBOOT
    assert plan.changes[-1].path == "/var/run/reboot-required"
    result = applied(host, KURED)
    assert result.exit_code == 3 and result.reboot_required  # pending the reboot kured will do
    assert "needs a reboot" in (root / SENTINEL).read_text()
    entries = (journal(root) or {})["entries"]
    assert [e["subsystem"] for e in entries][-1] == "reboot"
    assert revert(host).exit_code == 0
    assert not (root / SENTINEL).exists()
    after = snapshot(root)
    assert {k: v for k, v in after.items() if "nodeagent" not in k} == {
        k: v for k, v in before.items() if "nodeagent" not in k}


def test_without_the_strategy_no_sentinel(make_host) -> None:  # type: ignore[no-untyped-def]
    host, root = _tree(make_host)
    assert applied(host, ISOLATE).exit_code == 3
    assert not (root / SENTINEL).exists()


def test_after_the_reboot_nothing_is_written_again(make_host) -> None:  # type: ignore[no-untyped-def]
    host, root = _tree(make_host)
    assert applied(host, KURED).exit_code == 3
    # The reboot kured did: the kernel booted the arguments, and tmpfs lost the sentinel.
    args = (journal(root) or {})["entries"]
    assert any(e["subsystem"] == "reboot" for e in args)
    cmdline = (root / "proc/cmdline").read_text().strip()
    (root / "proc/cmdline").write_text(cmdline + " isolcpus=managed_irq,domain,1-3,5-7 nohz_full=1-3,5-7 "
                                       "rcu_nocbs=1-3,5-7 irqaffinity=0,4 systemd.cpu_affinity=0,4\n")
    (root / SENTINEL).unlink()
    _, plan = planned(host, KURED)
    assert plan.changes == [] and not plan.pending_reboot_args  # converged: no reboot, no new sentinel
    assert applied(host, KURED).exit_code == 0
    assert not (root / SENTINEL).exists()


def test_a_sentinel_already_there_is_left_alone(make_host) -> None:  # type: ignore[no-untyped-def]
    host, root = _tree(make_host)
    (root / SENTINEL).parent.mkdir(parents=True, exist_ok=True)
    (root / SENTINEL).write_text("")  # another tool asked for the reboot first
    _, plan = planned(host, KURED)
    assert "reboot" not in [c.subsystem for c in plan.changes]


def test_a_custom_sentinel_path(make_host) -> None:  # type: ignore[no-untyped-def]
    host, root = _tree(make_host)
    spec = {**KURED, "rebootSentinel": "/run/kured/reboot-required"}
    assert applied(host, spec).exit_code == 3
    assert (root / "run/kured/reboot-required").is_file()
    assert revert(host).exit_code == 0
    assert not Path(root / "run/kured").exists()  # the directory apply created goes too


@pytest.mark.parametrize(("spec", "field"), [
    ({"rebootStrategy": "reboot-now"}, "spec.rebootStrategy"),
    ({"rebootStrategy": 1}, "spec.rebootStrategy"),
    ({"rebootStrategy": "kured", "rebootSentinel": "reboot-required"}, "spec.rebootSentinel"),
    ({"rebootStrategy": "kured", "rebootSentinel": "/var/run/../etc/passwd"}, "spec.rebootSentinel"),
    ({"rebootStrategy": "none", "rebootSentinel": "/var/run/reboot-required"}, "spec.rebootSentinel"),
])
def test_bad_reboot_fields_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ProfileError, match=field.replace(".", r"\.")):
        parse_profile_text(yaml.safe_dump(profile_doc(spec)))
