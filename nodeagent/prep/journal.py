"""The journal: ``/var/lib/nodeagent/journal.json``, every value apply changed with its old value.

It is written atomically (temp file, fsync, rename) *before* each change, so that a crash at any
point leaves a journal from which ``revert`` restores the node. Entries accumulate across applies
and keep the value from before nodeagent first touched the setting: ``revert`` returns the node
to where it was before nodeagent, not merely before the last apply.

:class:`JournalGuard` is installed as the Host's write observer: a write that no journaled change
announced is refused, which makes "journal before write" a checked invariant, not a habit.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

from nodeagent.host import Host, HostError, WriteRecord
from nodeagent.inventory import to_plain
from nodeagent.owned import JOURNAL_PATH
from nodeagent.prep.model import Change

VERSION = 1


class JournalError(Exception):
    """The journal exists but cannot be understood; nothing is reverted from guesses."""


@dataclass
class Journal:
    entries: list[dict[str, Any]] = field(default_factory=list)
    profile: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    kubelet_restart_required_at: float | None = None
    exists: bool = False

    @classmethod
    def load(cls, host: Host) -> Journal:
        text = host.read_text(JOURNAL_PATH)
        if text is None:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JournalError(f"{JOURNAL_PATH}: not valid JSON ({exc}); fix or move it aside") from exc
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("entries"), list):
            raise JournalError(f"{JOURNAL_PATH}: not a version-{VERSION} nodeagent journal")
        return cls(entries=data["entries"], profile=data.get("profile"), created_at=data.get("created_at"),
                   updated_at=data.get("updated_at"),
                   kubelet_restart_required_at=data.get("kubelet_restart_required_at"), exists=True)

    def snapshot(self) -> Journal:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "profile": self.profile, "created_at": self.created_at,
                "updated_at": self.updated_at, "kubelet_restart_required_at": self.kubelet_restart_required_at,
                "entries": self.entries}

    def save(self, host: Host) -> None:
        """Atomic replace (no write hooks: the journal is nodeagent's own bookkeeping)."""
        now = time.time()
        self.created_at = self.created_at or now
        self.updated_at = now
        host.atomic_write(JOURNAL_PATH, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", 0o600)
        self.exists = True

    def restore_file(self, host: Host) -> None:
        """Put the journal file back as this object describes it (absent if it never existed).

        Removing goes through :meth:`Host.remove`, so the caller's guard must be active.
        """
        if self.exists:
            host.atomic_write(JOURNAL_PATH, json.dumps(self.to_dict(), indent=2) + "\n", 0o600)
        elif host.exists(JOURNAL_PATH):
            host.remove(JOURNAL_PATH)

    def find(self, key: str) -> dict[str, Any] | None:
        return next((e for e in self.entries if e.get("key") == key), None)

    def record(self, change: Change, before: Any) -> dict[str, Any]:
        """Announce a change (status ``applying``); the first recorded old value is kept."""
        entry = self.find(change.key)
        if entry is None:
            entry = {"key": change.key, "subsystem": change.subsystem, "target": change.target,
                     "action": change.action, "path": change.path, "old": to_plain(before),
                     "reversible": change.reversible, "detail": _restore_detail(change)}
            self.entries.append(entry)
        entry["new"] = to_plain(change.desired)
        entry["status"] = "applying"
        entry["changed_at"] = time.time()
        return entry


def _restore_detail(change: Change) -> dict[str, Any]:
    """What a later revert needs besides the old value (never the new file content)."""
    keep = ("node", "size_kb", "driver", "override", "gpu", "group", "kind", "regenerate", "argv", "restore")
    return {k: to_plain(v) for k, v in change.detail.items() if k in keep}


@dataclass
class JournalGuard:
    """Write observer: every real write must belong to a change the journal already holds."""

    active: str | None = None
    writes: list[str] = field(default_factory=list)

    def __call__(self, record: WriteRecord) -> None:
        if self.active is None:
            raise HostError(f"refusing an unjournaled write to {record.path}")
        self.writes.append(record.path)
