"""What nodeagent's own earlier apply left behind (owned by the prep subsystem; placeholder)."""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.inventory import PrepState


def discover_prep_state(host: Host, cmdline: str) -> PrepState:
    return PrepState(journal_present=host.exists("/var/lib/nodeagent/journal.json"), journal_changes=0,
                     reboot_required=False, kubelet_restart_required=False, pending_boot_args=[])
