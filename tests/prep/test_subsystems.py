"""The subsystem registry: every action has its handler, and what earlier versions wrote stays readable.

``golden/`` holds what the version before the registry (plain-string subsystems and actions, one
handlers module, a boot-arguments module that knew every subsystem) wrote for two scenarios that
together name every action: the apply's JSON output and the journal. They stand for journals on
hosts in the field: never regenerate the journals; a change to the apply output must be deliberate
(the readable-output change of issue 13 added ``detail.cpus`` to governor changes and reworded three
notes and messages; the journals stayed as they were).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from nodeagent.prep.apply import revert
from nodeagent.prep.model import Action, Change, Effect, Subsystem
from nodeagent.prep.subsystems import BOOT_ARGS, HANDLERS, SUBSYSTEMS
from tests.prep.helpers import applied, journal
from tests.support.trees import TreeSpec, nps4_like_pci, snapshot

GOLDEN = Path(__file__).parent / "golden"

EVERYTHING = {
    "hugepages": {"pages": [{"size": "2Mi", "count": 64, "numaNode": 0}, {"size": "1Gi", "count": 4}],
                  "defaultSize": "1Gi"},
    "ksm": {"enabled": True, "pagesToScan": 1000, "sleepMillisecs": 10},
    "cpu": {"reserved": "0,4", "isolated": "1-3,5-7", "governor": "performance"},
    "kernel": {"additionalArgs": ["nosoftlockup"], "iommu": True},
    "gpu": {"passthrough": [{"vendor": "10de", "device": "2684"}]},
}
SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # vfio-pci not loaded (modprobe), a GPU with its companion (pci-bind), modprobe.d and the profile
    # (file), 1Gi pages the kernel cannot find at runtime (deferred to the boot line: grub-dropin).
    "everything": ({"vendor": "AuthenticAMD", "cmdline": "ro quiet", "pci": nps4_like_pci(), "vfio_loaded": False,
                    "capacity": {(0, 1048576): 1}}, EVERYTHING),
    "ksm-off": ({"ksm": {"run": 1, "pages_to_scan": 100, "sleep_millisecs": 20, "pages_shared": 5,
                         "pages_sharing": 9}}, {"ksm": {"enabled": False}}),
}


def test_every_action_has_one_handler_and_every_subsystem_a_spec() -> None:
    assert set(HANDLERS) == set(Action)
    assert set(SUBSYSTEMS) == set(Subsystem)
    assert all(key is spec.key for key, spec in SUBSYSTEMS.items())
    # The planning order: memory first, the boot arguments last, then the reboot sentinel they call for.
    assert list(SUBSYSTEMS) == [Subsystem.HUGEPAGES, Subsystem.KSM, Subsystem.GOVERNOR, Subsystem.VFIO,
                                Subsystem.VGPU, Subsystem.REALTIME, Subsystem.KUBELET, Subsystem.PERSIST,
                                Subsystem.BOOTARGS, Subsystem.REBOOT]


def test_bootloader_writer_handlers_are_registered() -> None:
    assert set(BOOT_ARGS.handlers) <= set(HANDLERS)
    assert all(HANDLERS[action] is handler for action, handler in BOOT_ARGS.handlers.items())


def test_serialised_values_are_the_strings_they_always_were() -> None:
    change = Change(Subsystem.GOVERNOR, "policy0", "powersave", "performance", Effect.NOW, True, Action.ATTR,
                    "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor")
    assert json.dumps(change.to_dict()).startswith('{"subsystem": "cpu-governor", "target": "policy0"')
    assert change.key == "attr:/sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
    assert f"{change.subsystem} {change.action}" == "cpu-governor attr"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_apply_output_and_journal_match_the_previous_version(make_host, name: str) -> None:  # type: ignore[no-untyped-def]
    tree, spec = SCENARIOS[name]
    host, _, root = make_host(TreeSpec(**tree))
    result = applied(host, spec, boot=False)
    output = _as_previous_version(_untimed(json.dumps(result.to_dict())))
    assert output == _untimed((GOLDEN / f"apply-{name}.json").read_text())
    entries = journal(root)["entries"]  # type: ignore[index]
    for entry in entries:
        del entry["changed_at"]
    assert _as_previous_version(entries) == json.loads((GOLDEN / f"journal-{name}.json").read_text())["entries"]


def _as_previous_version(data: Any) -> Any:
    """What this version writes, less its two deliberate additions (issue 12), in the earlier form:
    starting KSM is its own action (``ksm-run``: its restore unmerges), and a file entry lists the
    directories its first write created (``created_dirs``: revert removes them)."""
    if isinstance(data, list):
        return [_as_previous_version(item) for item in data]
    if not isinstance(data, dict):
        return data
    out = {k: _as_previous_version(v) for k, v in data.items() if k != "created_dirs"}
    if out.get("action") == "ksm-run":
        out["action"] = "attr"
    if isinstance(out.get("key"), str) and out["key"].startswith("ksm-run:"):
        out["key"] = "attr:" + out["key"].removeprefix("ksm-run:")
    return out


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_journal_written_by_the_previous_version_reverts(make_host, name: str) -> None:  # type: ignore[no-untyped-def]
    tree, spec = SCENARIOS[name]
    host, _, root = make_host(TreeSpec(**tree))
    before = snapshot(root)
    assert applied(host, spec, boot=False).exit_code in (0, 3)
    # The host as that version left it: the same changes, its journal file.
    (root / "var/lib/nodeagent/journal.json").write_text((GOLDEN / f"journal-{name}.json").read_text())
    result = revert(host)
    assert (result.exit_code, result.failed) == (0, [])
    assert len(result.restored) + len(result.skipped) == len(json.loads(
        (GOLDEN / f"journal-{name}.json").read_text())["entries"])
    # Everything is back but the vfio-pci module, which the plan says stays loaded (not reversible).
    assert _without_vfio_module(snapshot(root)) == _without_vfio_module(before)


def _untimed(text: str) -> Any:
    """The JSON with the one wall-clock figure (a short allocation's retry time) masked."""
    return json.loads(re.sub(r"in \d+\.\ds \(with compaction\)", "in Xs (with compaction)", text))


def _without_vfio_module(state: dict[str, str]) -> dict[str, str]:
    return {path: value for path, value in state.items() if not path.startswith("sys/bus/pci/drivers/vfio-pci")}
