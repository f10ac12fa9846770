"""The journal: ``/var/lib/nodeagent/journal.json``, every value apply changed with its old value.

It is written atomically (temp file, fsync, rename) *before* each change, so that a crash at any
point leaves a journal from which ``revert`` restores the node. Entries accumulate across applies
and keep the value from before nodeagent first touched the setting: ``revert`` returns the node
to where it was before nodeagent, not merely before the last apply.

:class:`JournalGuard` is installed as the Host's write observer: a write that no journaled change
announced is refused, which makes "journal before write" a checked invariant, not a habit.

The journal is read back by a later process, and an operator may have edited it, so every entry is
validated on load (:func:`entry_problem`): its action must be known, its path a host path, and its
old value of the type its handler restores (a page count is an integer, an attribute a string).
``apply`` refuses a journal with a malformed entry (``JournalError`` naming it); ``revert`` restores
every valid entry and keeps the malformed ones in the journal for the operator.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from nodeagent.host import Host, HostError, WriteRecord
from nodeagent.inventory import to_plain
from nodeagent.owned import JOURNAL_PATH
from nodeagent.prep.model import Action, Change

VERSION = 1
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class JournalError(Exception):
    """The journal exists but cannot be understood; nothing is reverted from guesses."""


#: Actions whose entry names the host path it restores.
_PATH_ACTIONS = frozenset({Action.ATTR, Action.KSM_STOP, Action.KSM_RUN, Action.HUGEPAGES, Action.FILE,
                           Action.GRUB_DROPIN, Action.KUBELET_FILE, Action.KUBELET_STATE})


def entry_problem(entry: Any) -> str | None:
    """Why a journal entry cannot be restored from, or None when it can."""
    if not isinstance(entry, dict):
        return f"not an entry object: {_shown(entry)}"
    for name in ("key", "target"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            return f"{name} is {_shown(entry.get(name))}, not a non-empty string"
    try:
        action = Action(str(entry.get("action")))
    except ValueError:
        return f"unknown action {_shown(entry.get('action'))}"
    path, old = entry.get("path"), entry.get("old")
    if action in _PATH_ACTIONS and not (isinstance(path, str) and path.startswith("/")):
        return f"path is {_shown(path)}, not an absolute host path"
    if path is not None and not isinstance(path, str):
        return f"path is {_shown(path)}, not a string"
    if action is Action.HUGEPAGES and (isinstance(old, bool) or not isinstance(old, int) or old < 0):
        return f"old is {_shown(old)}, not a page count"
    if action in (Action.ATTR, Action.KSM_STOP, Action.KSM_RUN) and not isinstance(old, str):
        return f"old is {_shown(old)}, not the attribute's text"
    if action in (Action.FILE, Action.GRUB_DROPIN, Action.PCI_BIND, Action.KUBELET_FILE,
                  Action.KUBELET_STATE) and not (old is None or isinstance(old, str)):
        return f"old is {_shown(old)}, not a file's text or null"
    if not isinstance(entry.get("reversible", True), bool):
        return f"reversible is {_shown(entry.get('reversible'))}, not true or false"
    if not isinstance(entry.get("detail", {}) or {}, dict):
        return f"detail is {_shown(entry.get('detail'))}, not an object"
    if action is Action.MDEV and not _UUID.match(str((entry.get("detail") or {}).get("uuid"))):
        # revert writes to /sys/bus/mdev/devices/<uuid>/remove: only ever a UUID's directory
        return f"detail.uuid is {_shown((entry.get('detail') or {}).get('uuid'))}, not a mediated device's UUID"
    created = entry.get("created_dirs", [])
    if not isinstance(created, list) or not all(isinstance(d, str) and d.startswith("/") for d in created):
        return f"created_dirs is {_shown(created)}, not a list of host paths"
    return None


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Journal:
    entries: list[dict[str, Any]] = field(default_factory=list)  # as found: valid and malformed alike
    profile: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    kubelet_restart_required_at: float | None = None
    exists: bool = False
    invalid: dict[int, str] = field(default_factory=dict)  # index in entries → why it is malformed

    @classmethod
    def load(cls, host: Host, *, strict: bool = True) -> Journal:
        """The journal, every entry validated. ``strict``: a malformed entry is a :class:`JournalError`
        naming it; otherwise malformed entries are listed in ``invalid`` (``revert`` keeps them)."""
        if host.is_dir(JOURNAL_PATH):
            raise JournalError(f"{JOURNAL_PATH} is a directory, not a journal; move it aside")
        text = host.read_text(JOURNAL_PATH)
        if text is None:
            if host.exists(JOURNAL_PATH):
                raise JournalError(f"{JOURNAL_PATH} exists but cannot be read; check its permissions")
            return cls()
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise JournalError(f"{JOURNAL_PATH}: not valid JSON ({exc}); fix or move it aside") from exc
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("entries"), list):
            raise JournalError(f"{JOURNAL_PATH}: not a version-{VERSION} nodeagent journal")
        for name in ("created_at", "updated_at", "kubelet_restart_required_at"):
            if data.get(name) is not None and (isinstance(data[name], bool) or not isinstance(data[name], int | float)):
                raise JournalError(f"{JOURNAL_PATH}: {name} is {_shown(data[name])}, not a time")
        if data.get("profile") is not None and not isinstance(data["profile"], str):
            raise JournalError(f"{JOURNAL_PATH}: profile is {_shown(data['profile'])}, not a name")
        journal = cls(entries=data["entries"], profile=data.get("profile"), created_at=data.get("created_at"),
                      updated_at=data.get("updated_at"),
                      kubelet_restart_required_at=data.get("kubelet_restart_required_at"), exists=True)
        for index, entry in enumerate(journal.entries):
            problem = entry_problem(entry)
            if problem is not None:
                journal.invalid[index] = problem
        if strict and journal.invalid:
            raise JournalError(journal.describe_invalid() + "; run `nodeagent revert` (it restores the valid "
                               "entries and keeps these) or fix the journal")
        return journal

    def describe_invalid(self) -> str:
        shown = "; ".join(f"entry {i + 1}: {why}" for i, why in sorted(self.invalid.items()))
        return f"{JOURNAL_PATH}: {len(self.invalid)} malformed entr{'y' if len(self.invalid) == 1 else 'ies'} ({shown})"

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
        return next((e for e in self.entries if isinstance(e, dict) and e.get("key") == key), None)

    def record(self, change: Change, before: Any, *, created_dirs: list[str] | None = None) -> dict[str, Any]:
        """Announce a change (status ``applying``); the first recorded old value is kept, and so are
        the directories the first write of this file had to create (``revert`` removes them)."""
        entry = self.find(change.key)
        if entry is None:
            entry = {"key": change.key, "subsystem": change.subsystem, "target": change.target,
                     "action": change.action, "path": change.path, "old": to_plain(before),
                     "reversible": change.reversible, "detail": _restore_detail(change)}
            if created_dirs:
                entry["created_dirs"] = list(created_dirs)
            self.entries.append(entry)
        entry["new"] = to_plain(change.desired)
        entry["status"] = "applying"
        entry["changed_at"] = time.time()
        return entry


def missing_dirs(host: Host, path: str | None) -> list[str]:
    """The directories above ``path`` that do not exist yet, deepest first (a write will create them)."""
    missing: list[str] = []
    directory = os.path.dirname(path or "/")
    while directory not in ("/", "") and not host.is_dir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    return missing


def remove_created_dirs(host: Host, dirs: list[Any]) -> None:
    """Remove, deepest first, the directories apply created, each only if empty and still a directory.

    The Host writes files, not directories, so this goes to the filesystem through ``fs_path``;
    a directory someone has since put a file in stays (``rmdir`` refuses), which is the point.
    """
    for directory in sorted((d for d in dirs if isinstance(d, str) and d.startswith("/") and d != "/"),
                            key=lambda d: d.count("/"), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(host.fs_path(directory, follow=False))


def _restore_detail(change: Change) -> dict[str, Any]:
    """What a later revert needs besides the old value (never the new file content)."""
    keep = ("node", "size_kb", "driver", "override", "gpu", "group", "kind", "regenerate", "argv", "restore",
            "uuid", "parent", "type")
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
