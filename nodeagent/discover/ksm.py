"""Kernel samepage merging: every counter and knob under /sys/kernel/mm/ksm."""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.inventory import KsmInfo

KSM_DIR = "/sys/kernel/mm/ksm"
NAMED = ("run", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans",
         "pages_to_scan", "sleep_millisecs", "merge_across_nodes")


def discover_ksm(host: Host) -> KsmInfo:
    entries = host.listdir(KSM_DIR)
    counters: dict[str, int] = {}
    for name in entries:
        if name in NAMED:
            value = host.read_int(f"{KSM_DIR}/{name}")  # garbled → warning naming the file
        else:
            text = host.read_str(f"{KSM_DIR}/{name}")  # advisor_mode & co. are words, not numbers
            value = int(text) if text and text.lstrip("-").isdigit() else None
        if value is not None:
            counters[name] = value
    return KsmInfo(available=bool(entries), counters=counters, **{k: counters.get(k) for k in NAMED})
