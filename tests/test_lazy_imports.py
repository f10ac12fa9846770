"""prometheus_client without its package ``__init__`` (nodeagent/metrics/prom.py, nodeagent/lazypkg.py):
nodeagent imports the library only through nodeagent.metrics.prom, which registers the package
lazily; metric families, a registry and nodeagent's encoder then work with the exposition module
and the instrumentation classes unimported, and code that asks for the whole library gets it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "nodeagent"
GATEWAY = PACKAGE / "metrics" / "prom.py"


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_only_the_gateway_module_imports_prometheus_client() -> None:
    offenders = sorted(str(path.relative_to(REPO)) for path in PACKAGE.rglob("*.py") if path != GATEWAY
                       and any(m.split(".")[0] == "prometheus_client" for m in _imported_modules(path)))
    assert offenders == [], "import prometheus_client's names from nodeagent.metrics.prom"


SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
from nodeagent.metrics.prom import CollectorRegistry, GaugeMetricFamily, ProcessCollector
from nodeagent.metrics.exposition import TextRenderer

class One:
    def collect(self):
        family = GaugeMetricFamily("test_gauge", "a gauge", labels=["k"])
        family.add_metric(['v"1'], 2.5)
        yield family

registry = CollectorRegistry(auto_describe=False)
registry.register(One())
ProcessCollector(registry=registry)
text = TextRenderer().render(registry.collect()).decode()
lean = sorted(m for m in sys.modules if m.startswith(("prometheus_client", "urllib.request", "wsgiref")))
from nodeagent.metrics.prom import choose_encoder
encoder, content_type = choose_encoder("application/openmetrics-text; version=1.0.0")
openmetrics = encoder(registry).decode()
import prometheus_client
counter = prometheus_client.Counter("test_counter", "a counter", registry=None)  # defined only by the __init__
counter.inc()
print(json.dumps({{"text": text, "lean": lean, "content_type": content_type, "openmetrics": openmetrics,
                  "counter": counter._value.get(), "registry": type(prometheus_client.REGISTRY).__name__}}))
"""


def test_metrics_work_without_the_package_init_and_the_whole_library_stays_reachable() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(repo=str(REPO))], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert 'test_gauge{k="v\\"1"} 2.5\n' in result["text"]
    assert "process_cpu_seconds_total" in result["text"]
    lean = set(result["lean"])
    assert {"prometheus_client.metrics_core", "prometheus_client.registry"} <= lean
    assert not lean & {"prometheus_client.exposition", "prometheus_client.metrics", "prometheus_client.gc_collector",
                       "urllib.request", "wsgiref.simple_server"}
    assert result["content_type"].startswith("application/openmetrics-text")
    assert result["openmetrics"].endswith("# EOF\n") and 'test_gauge{k="v\\"1"} 2.5' in result["openmetrics"]
    assert result["counter"] == 1.0
    assert result["registry"] == "CollectorRegistry"
