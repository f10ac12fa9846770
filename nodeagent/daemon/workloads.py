"""The daemon's ``--workload-classes`` file (a ConfigMap mount): read at start, re-read on reload.

A bad file at start stops the daemon (exit 2, every problem named), as bad flags do; a file that turns
bad later (a ConfigMap edit) keeps the classes last read, with an error logged, as a bad profile does.
"""

from __future__ import annotations

import os

from nodeagent.daemon.options import OptionsError
from nodeagent.workloads import WorkloadClassesError, default_table, load_workload_classes


class WorkloadClassesFile:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.table = default_table()
        self._fingerprint = self.fingerprint()
        if path is not None:
            try:
                self.table = load_workload_classes(path)
            except WorkloadClassesError as exc:
                raise OptionsError(f"--workload-classes: {exc}") from exc

    def reload(self) -> str | None:
        """Read the file again; the error (the previous classes stay) or None."""
        if self.path is None:
            return None
        self._fingerprint = self.fingerprint()
        try:
            self.table = load_workload_classes(self.path)
        except WorkloadClassesError as exc:
            return f"{exc}; the workload classes last read stay in force"
        return None

    def fingerprint(self) -> tuple[int, int, int]:
        """Inode, size and mtime of the file (stat follows a ConfigMap's ``..data`` link, so a swap changes it)."""
        if self.path is None:
            return (0, 0, 0)
        try:
            st = os.stat(self.path)
        except OSError:
            return (-1, -1, -1)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        return self.path is not None and self.fingerprint() != self._fingerprint
