"""``python -m tests.serve.slow_writes …`` is ``python -m nodeagent …`` with one host write held.

The test's delay hook for "SIGTERM in the middle of an apply": the first real write to a path
ending in ``$NODEAGENT_TEST_BLOCK_WRITE`` creates ``$NODEAGENT_TEST_GATE/reached`` and waits (at
most 60 s) for ``$NODEAGENT_TEST_GATE/release``. It hooks ``Host._before_write``, i.e. after the
journal announced the change and before the write itself — the widest window there is.
"""

from __future__ import annotations

import os
import runpy
import time
from pathlib import Path

from nodeagent.host import Host, WriteRecord


def _install(suffix: str, gate: str) -> None:
    original = Host._before_write
    held = {"done": False}

    def before_write(self: Host, record: WriteRecord) -> bool:
        if not held["done"] and not self.dry_run and record.path.endswith(suffix):
            held["done"] = True
            Path(gate, "reached").touch()
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(gate, "release")) and time.monotonic() < deadline:
                time.sleep(0.02)
        return original(self, record)

    Host._before_write = before_write  # type: ignore[method-assign]


if __name__ == "__main__":
    _install(os.environ["NODEAGENT_TEST_BLOCK_WRITE"], os.environ["NODEAGENT_TEST_GATE"])
    runpy.run_module("nodeagent", run_name="__main__", alter_sys=True)
