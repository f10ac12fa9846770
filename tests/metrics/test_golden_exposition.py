"""The full exposition of one fixture host against its golden file (tests/support/golden.py).

A failure prints the diff; if the change is intended, regenerate the file with
``python -m tests.support.golden`` and commit it with the change.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from tests.support.exposition import Exposition
from tests.support.golden import GOLDEN_FILE, GOLDEN_HOST, exposition_of


def test_the_exposition_of_the_golden_host_is_unchanged(host_trees: Callable[[str], Path]) -> None:
    text = exposition_of(host_trees(GOLDEN_HOST))
    golden = GOLDEN_FILE.read_text()
    diff = "".join(difflib.unified_diff(golden.splitlines(keepends=True), text.splitlines(keepends=True),
                                        str(GOLDEN_FILE.name), "now"))
    assert not diff, f"the exposition changed (regenerate with `python -m tests.support.golden`):\n{diff}"


def test_the_golden_file_is_a_valid_exposition_with_the_inventory_series() -> None:
    exposition = Exposition(GOLDEN_FILE.read_text())
    assert exposition.value("nodeagent_info", version="<version>") == 1
    assert len(exposition.get("nodeagent_gpu_info")) == 9  # the fixture's eight H100s and the BMC's VGA
    assert "nodeagent_collector_duration_seconds" not in exposition.types
