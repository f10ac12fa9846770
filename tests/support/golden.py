"""The golden exposition: the full ``/metrics`` text of one fixture host's inventory-derived series.

A renamed series, a new label or a changed value shows up as a diff of
``tests/metrics/golden/intel-2s-8gpu.prom`` in review, as node_exporter's
``collector/fixtures/e2e-output.txt`` does. ``tests/metrics/test_golden_exposition.py`` compares.

Regenerate it after an intended change, and review the diff:

    python -m tests.support.golden          # from the repository root

Only what is deterministic is kept: the collectors' own durations are dropped and nodeagent's
version is written as ``<version>``, so a release does not rewrite the file.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN_HOST = "intel-2s-8gpu"
GOLDEN_FILE = REPO / "tests" / "metrics" / "golden" / f"{GOLDEN_HOST}.prom"
UNSTABLE_FAMILIES = ("nodeagent_collector_duration_seconds",)


def exposition_of(root: Path) -> str:
    """The inventory-derived exposition of the host tree at ``root``, made deterministic."""
    from nodeagent.discover import discover
    from nodeagent.host import Host
    from nodeagent.metrics import MetricsOptions, build_metrics

    host = Host(str(root))
    inventory = discover(host)
    text = build_metrics(lambda: inventory, host, MetricsOptions(live=False, process=False)).text().decode()
    return normalise(text)


def normalise(text: str) -> str:
    lines = [line for line in text.splitlines()
             if not any(re.match(rf"(# (HELP|TYPE) )?{family}\b", line) for family in UNSTABLE_FAMILIES)]
    return "\n".join(re.sub(r'\bversion="[^"]*"', 'version="<version>"', line) for line in lines) + "\n"


def golden_exposition(dest: Path) -> str:
    """Generate the golden host into ``dest`` and return its exposition."""
    from fixtures.hostgen import build_host

    return exposition_of(build_host(GOLDEN_HOST, dest))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        text = golden_exposition(Path(tmp) / GOLDEN_HOST)
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN_FILE.write_text(text)
    print(f"wrote {GOLDEN_FILE.relative_to(REPO)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
