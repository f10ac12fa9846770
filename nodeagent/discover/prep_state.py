"""What nodeagent's own earlier apply left behind: the journal, a pending reboot, a pending kubelet restart.

* reboot-required: an argument nodeagent persisted (its grub drop-in, or its record of what it
  added through grubby / kernel-install) is not on ``/proc/cmdline``;
* kubelet-restart-required: an apply changed hugepages or the kubelet's configuration while kubelet
  ran (the journal records when), and kubelet has not started since; or the kubelet's state files
  still wait for their removal before its next start (nodeagent's pending record). Without
  kubelet's start time the flag stays set until the next apply clears it (conservative: a label
  that says "restart" one time too many costs a restart; one that says "fine" too early costs VMs
  that cannot get their pages).
"""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.inventory import PrepState
from nodeagent.owned import (
    BOOTARGS_STATE_PATH,
    DROPIN_PATH,
    JOURNAL_PATH,
    KUBELET_STATE_PENDING_PATH,
    pending,
    persisted_args,
)


def discover_prep_state(host: Host, cmdline: str, kubelet_started_at: float | None = None,
                        kubelet_running: bool | None = None) -> PrepState:
    persisted = persisted_args(host.read_text(DROPIN_PATH), host.read_text(BOOTARGS_STATE_PATH))
    pending_args = pending(persisted, cmdline)
    journal_text = host.read_text(JOURNAL_PATH)
    changes = 0
    applied_at: float | None = None
    restart_since: float | None = None
    if journal_text is not None:
        import json  # only a host nodeagent prepared has a journal: the others skip its ~2 ms import

        try:
            data = json.loads(journal_text)
        except json.JSONDecodeError:
            host.warn(JOURNAL_PATH, "not valid JSON; nodeagent's prep state is unknown")
            data = {}
        if isinstance(data, dict):
            entries = data.get("entries")
            changes = len(entries) if isinstance(entries, list) else 0
            applied_at = _number(data.get("updated_at"))
            restart_since = _number(data.get("kubelet_restart_required_at"))
    kubelet_restart = restart_since is not None
    if kubelet_restart and kubelet_started_at is not None and kubelet_started_at > (restart_since or 0):
        kubelet_restart = False
    if host.exists(KUBELET_STATE_PENDING_PATH):
        kubelet_restart = True  # its stale state files are still there: it has not restarted as it must
    if kubelet_running is False:
        kubelet_restart = False  # a kubelet that is not running reads the pages when it starts
    return PrepState(
        journal_present=journal_text is not None,
        journal_changes=changes,
        reboot_required=bool(pending_args),
        kubelet_restart_required=kubelet_restart,
        pending_boot_args=pending_args,
        applied_at=applied_at,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
