"""The apply lock: one apply or revert at a time on a host, held from before discovery to the end.

Two applies that each planned from what they saw before the other wrote would leave a mix (the
hugepages of one profile, the governor of the other), so the lock is taken *before* discovery:
the plan is made from the host as it is while nobody else can change it. ``apply`` and ``revert``
wait for it a bounded time, saying so; the daemon does not wait (it retries at its next reconcile).

The lock is ``flock(2)`` on :data:`~nodeagent.owned.LOCK_PATH`, which holds the holder's pid. It is
re-entrant within one thread: ``execute`` and ``revert`` take it themselves (so that every caller is
covered) and find it already held when the CLI took it before discovery.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator

from nodeagent.host import Host, HostError
from nodeagent.owned import LOCK_PATH

_local = threading.local()  # this thread's held lock files (real path → depth)


class LockBusyError(HostError):
    """Another process holds the apply lock (after waiting, if asked to wait)."""


def _held() -> dict[str, int]:
    held: dict[str, int] | None = getattr(_local, "held", None)
    if held is None:
        held = _local.held = {}
    return held


@contextlib.contextmanager
def apply_lock(host: Host, *, wait_s: float = 0.0, on_wait: Callable[[str], None] | None = None,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Hold the host's apply lock for the block; wait up to ``wait_s`` for another holder.

    Raises :class:`LockBusyError` ("another apply is running") when it is still held after that;
    ``on_wait`` is told once when waiting starts.
    """
    target = host.fs_path(LOCK_PATH)
    held = _held()
    if target in held:
        held[target] += 1
        try:
            yield
        finally:
            held[target] -= 1
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = clock() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if clock() >= deadline:
                    waited = f" after waiting {wait_s:.0f}s" if wait_s > 0 else ""
                    raise LockBusyError(f"another apply is running ({holder}; {LOCK_PATH} is locked){waited}; "
                                        "nothing was changed") from None
                if not told and on_wait is not None:
                    on_wait(f"another apply is running ({holder}); waiting up to {wait_s:.0f}s for it to finish")
                    told = True
                sleep(min(0.2, max(deadline - clock(), 0.01)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        held[target] = 1
        try:
            yield
        finally:
            del held[target]
    finally:
        os.close(fd)  # releases the flock


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"
