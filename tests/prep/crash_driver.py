"""Run the nodeagent CLI and SIGKILL it at its Nth host write: ``python -m tests.prep.crash_driver N MODE ARGS…``.

MODE ``before``: killed just before write N reaches the host (the journal already announced it).
MODE ``after``: write N is made, then the process is killed before it can journal or verify more.
Writes are what the Host's interceptors see (kernel attributes, whole files, removals), so the
kill lands between two steps of ``execute`` exactly as a power cut or an OOM kill would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from nodeagent.host import Host, WriteRecord


def _install(kill_at: int, mode: str) -> None:
    count = [0]
    original_post_init = Host.__post_init__

    def crash(host: Host, record: WriteRecord) -> bool | None:
        if record.kind not in ("write", "file", "remove"):
            return None
        count[0] += 1
        if count[0] != kill_at:
            return None
        if mode == "after":
            if record.kind == "write":
                fd = os.open(host.fs_path(record.path), os.O_WRONLY | os.O_TRUNC)
                os.write(fd, (record.value or "").encode())
                os.close(fd)
            elif record.kind == "file":
                host.atomic_write(record.path, record.value or "")
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(host.fs_path(record.path, follow=False))
        os.kill(os.getpid(), signal.SIGKILL)
        return None

    def post_init(self: Host) -> None:
        original_post_init(self)
        self.interceptors.append(crash)

    Host.__post_init__ = post_init  # type: ignore[method-assign]


if __name__ == "__main__":
    _install(int(sys.argv[1]), sys.argv[2])
    from nodeagent.cli import main

    main(sys.argv[3:])
