"""The handler protocol (read, apply and verify, restore) and the two handlers several subsystems share.

A subsystem module registers the handlers of its own actions (:mod:`nodeagent.prep.subsystems`
collects them); the generic ones live here: ``attr`` (one kernel attribute: the governor, KSM's
parameters) and ``file`` (a file nodeagent owns: modprobe.d, the installed profile).

Every handler's ``restore`` reads first and writes only what differs: it runs both for a change
that completed and for one that failed halfway (or never wrote at all, when the kernel refused
the very first write), and must leave the old value in place in every case. ``restore`` takes the
journaled fields rather than a :class:`Change`, so that a later process (``revert``) can call it
from the journal alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nodeagent.host import Host
from nodeagent.prep.model import Action, Change


class VerifyError(RuntimeError):
    """A write the kernel accepted but that did not take (read back differs)."""


class UnreadableError(RuntimeError):
    """The current value cannot be read, so it could not be journaled and restored: never changed."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        super().__init__(f"{path}: {why}; nodeagent never changes a value it cannot read back and restore")


def why_unreadable(host: Host, path: str, *, number: bool = False) -> str | None:
    """Why ``path`` has no usable current value (None: it reads fine).

    Absent, denied (EACCES), an I/O error (EIO) and, for ``number``, text that is not an integer
    (``abc``) all count: a value nodeagent cannot read is one it cannot journal and put back.
    """
    text = host.read_text(path)
    if text is None:
        if host.is_denied(path):
            return "permission denied reading the current value"
        return "cannot read the current value (I/O error)" if host.exists(path) else "absent"
    if number:
        try:
            int(text.strip())
        except ValueError:
            return f"the current value reads {text.strip()[:40]!r}, not a number"
    return None


@dataclass
class AllocationPolicy:
    """How long to retry a write the kernel satisfies only partly (a hugepage allocation)."""

    timeout_s: float = 60.0
    interval_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    log: list[str] = field(default_factory=list)


@dataclass
class RunState:
    """What one apply carries between changes."""

    allocation: AllocationPolicy
    allow_partial: bool = False
    created_dirs: dict[str, list[str]] = field(default_factory=dict)  # change key → directories its write made


Before = Callable[[Host, Change], Any]
Apply = Callable[[Host, Change, RunState], None]
Restore = Callable[[Host, str | None, str, Any, dict[str, Any]], None]


@dataclass(frozen=True)
class Handler:
    before: Before  # the value to journal, read just before the change
    apply: Apply  # write and verify
    restore: Restore  # (path, target, old value, journaled detail) → the old state back


# --- attr: one kernel attribute ---------------------------------------------------------------


def attr_before(host: Host, change: Change) -> Any:
    assert change.path is not None
    value = host.read_str(change.path)
    if value is None:
        raise UnreadableError(change.path, why_unreadable(host, change.path) or "cannot read the current value")
    return value


def attr_apply(host: Host, change: Change, state: RunState) -> None:
    assert change.path is not None
    host.write(change.path, str(change.desired))
    if host.dry_run:
        return
    got = host.read_str(change.path)
    if got != str(change.desired):
        raise VerifyError(f"{change.path}: wrote {change.desired!r}, the kernel reports {got!r}")


def attr_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if old is None or host.read_str(path) == str(old):
        return
    host.write(path, str(old))
    if not host.dry_run and host.read_str(path) != str(old):
        raise VerifyError(f"{path}: restored {old!r}, the kernel reports {host.read_str(path)!r}")


ATTR = Handler(attr_before, attr_apply, attr_restore)


# --- file: a file nodeagent owns --------------------------------------------------------------


def file_before(host: Host, change: Change) -> Any:
    """The file's text, or None when it is absent (restore removes it). Present but unreadable refuses."""
    assert change.path is not None
    text = host.read_text(change.path)
    if text is None and (host.exists(change.path) or host.is_denied(change.path)):
        raise UnreadableError(change.path, why_unreadable(host, change.path) or "cannot read the current file")
    return text


def file_apply(host: Host, change: Change, state: RunState) -> None:
    assert change.path is not None
    put_file(host, change.path, change.detail.get("content"))


def put_file(host: Host, path: str, content: str | None, mode: int = 0o644) -> None:
    """Write ``content`` whole with ``mode`` (None: remove the file), then read it back."""
    if content is None:
        host.remove(path)
    else:
        host.write_file(path, content, mode)
    if not host.dry_run and host.read_text(path) != content:
        raise VerifyError(f"{path}: content differs from what was written")


def file_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if host.read_text(path) == old:
        return
    put_file(host, path, old)


FILE = Handler(file_before, file_apply, file_restore)


def nothing_before(host: Host, change: Change) -> Any:
    """For an action that is not restored: the plan's view of the old value is enough."""
    return change.current


def no_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    return


#: The generic handlers, for the subsystems that use them to register.
GENERIC: dict[Action, Handler] = {Action.ATTR: ATTR, Action.FILE: FILE}
