"""Faults injected at the moment of a host write, through :data:`nodeagent.host.Interceptor`.

An interceptor installed after the kernel emulator is asked first, so a fault stops the write
before the emulator (or the real file) sees it, as the kernel's own refusal would.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from nodeagent.host import Host, Interceptor, WriteRecord


def fail_writes(host: Host, path_suffix: str, error: int, *,
                kinds: tuple[str, ...] = ("write", "file")) -> Interceptor:
    """Make every write to a path ending in ``path_suffix`` fail with ``error``; returns the interceptor."""

    def refuse(record: WriteRecord) -> None:
        if record.kind in kinds and record.path.endswith(path_suffix):
            raise OSError(error, os.strerror(error), record.path)

    return fault(host, refuse)


def fault(host: Host, check: Callable[[WriteRecord], None]) -> Interceptor:
    """Install ``check`` (which raises ``OSError`` to refuse a write) as an interceptor; returns it."""

    def interceptor(_host: Host, record: WriteRecord) -> None:
        check(record)

    host.interceptors.append(interceptor)
    return interceptor


def clear_faults(host: Host, *faults: Interceptor) -> None:
    """Remove the given fault interceptors (the cause goes away); the kernel emulator stays."""
    for installed in faults:
        host.interceptors.remove(installed)
