"""Whether a process runs on the host, and since when.

The process is found by its ``comm`` under the root's ``/proc``, read through the Host (one small
file per process, as cheap as it gets). Its start time comes from psutil on a live host (the root
is ``/``, or ``--live``: the host's ``/`` mounted with its PID namespace), with psutil's procfs path
at the root's ``/proc``: psutil does the arithmetic from ``stat``'s start ticks, the clock tick and
``btime``, and knows a process that exited meanwhile. psutil is asked about that one process only:
walking every process through it (a ``Process`` object, a full ``stat`` parse each) costs several
times the Host's ``comm`` reads, on top of its import, on every discovery.

Under any other root (a fixture or a captured tree) ``/proc/<pid>`` are plain files, not processes,
and psutil cannot follow: it needs each process's complete ``stat`` and checks pids against this
machine's kernel. There ``stat`` and ``btime`` are read through the Host.
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
    for pid in pids:
        if (host.read_str(f"/proc/{pid}/comm") or "") in names:
            return True, _live_start_time(host, int(pid)) if host.is_live else _start_time(host, pid)
    return False, None


@contextlib.contextmanager
def procfs_path(path: str) -> Iterator[ModuleType]:
    """psutil, reading ``path`` instead of ``/proc`` for the duration (a live host's /proc mounted elsewhere).

    ``psutil.PROCFS_PATH`` is global to the process: it is swapped under a lock and restored, and
    nothing is changed when ``path`` already is psutil's. Imported here, so that only a discovery that
    finds the process on a live host pays for the import.
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


def _live_start_time(host: Host, pid: int) -> float | None:
    with procfs_path(host.fs_path("/proc")) as psutil:
        try:
            return float(psutil.Process(pid).create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None  # gone since listed, or not ours to read


def _start_time(host: Host, pid: str) -> float | None:
    """The start time from the tree's own ``/proc/<pid>/stat`` and ``/proc/stat`` (not a live host)."""
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
