"""``python -m tests.serve.report_modules …`` is ``python -m nodeagent …`` that, on its way out,
writes the names of every module it imported (``sys.modules``) as a JSON list to
``$NODEAGENT_TEST_MODULES``: what a long-running ``serve`` holds resident."""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
from pathlib import Path


def _report(path: str) -> None:
    Path(path).write_text(json.dumps(sorted(sys.modules)))


if __name__ == "__main__":
    atexit.register(_report, os.environ["NODEAGENT_TEST_MODULES"])
    runpy.run_module("nodeagent", run_name="__main__", alter_sys=True)
