"""Whether a process runs on the host, and since when: psutil on a live host, the Host's files elsewhere.

On a live host (the root is ``/``, or ``--live``: the host's ``/`` mounted with its PID namespace)
the process table is psutil's, read from the root's ``/proc``. psutil handles what hand parsing
gets wrong (a process that exits mid-read, the start-time arithmetic from ``stat`` and ``btime``).
Under any other root (a fixture or a captured tree) ``/proc/<pid>`` are plain files, not
processes, and psutil cannot follow: it needs each process's complete ``stat`` and checks pids
against this machine's kernel. There ``comm`` and ``stat`` are read through the Host.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Collection, Iterator
from types import ModuleType

from nodeagent.host import Host

_PROCFS_LOCK = threading.Lock()


def find_process(host: Host, names: Collection[str]) -> tuple[bool | None, float | None]:
    """Whether a process whose name (``comm``) is one of ``names`` runs, and since when (epoch seconds).

    ``(None, None)`` when the root has no process table (a fixture without ``/proc/<pid>``): unknown.
    """
    pids = [p for p in host.listdir("/proc") if p.isdigit()]
    if not pids:
        return None, None
    if host.is_live:
        return _live(host.fs_path("/proc"), [int(p) for p in pids], names)
    for pid in pids:
        if (host.read_str(f"/proc/{pid}/comm") or "") in names:
            return True, _start_time(host, pid)
    return False, None


@contextlib.contextmanager
def procfs_path(path: str) -> Iterator[ModuleType]:
    """psutil, reading ``path`` instead of ``/proc`` for the duration (a live host's /proc mounted elsewhere).

    ``psutil.PROCFS_PATH`` is global to the process: it is swapped under a lock and restored, and
    nothing is changed when ``path`` already is psutil's. Imported here, so that only discovery on a
    live host pays for the import.
    """
    import psutil

    if path == psutil.PROCFS_PATH:
        yield psutil
        return
    with _PROCFS_LOCK:
        previous, psutil.PROCFS_PATH = psutil.PROCFS_PATH, path
        try:
            yield psutil
        finally:
            psutil.PROCFS_PATH = previous


def _live(procfs: str, pids: list[int], names: Collection[str]) -> tuple[bool, float | None]:
    with procfs_path(procfs) as psutil:
        for pid in pids:
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    if process.name() in names:
                        return True, process.create_time()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # gone since listed, or not ours to read: not the one we look for
    return False, None


def _start_time(host: Host, pid: str) -> float | None:
    stat = host.read_str(f"/proc/{pid}/stat")
    boot = next((line.split()[1] for line in (host.read_text("/proc/stat") or "").splitlines()
                 if line.startswith("btime ")), None)
    if not stat or boot is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        ticks = int(fields[19])  # field 22 of stat; fields here start at field 3
        return int(boot) + ticks / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError):
        return None
