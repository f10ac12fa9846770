"""prometheus_client as nodeagent uses it: the one module that imports it (tests/test_lazy_imports.py).

``prometheus_client``'s package ``__init__`` imports everything the library has: its exposition
module (with the push-gateway client, i.e. ``urllib.request`` and ``hashlib``, and the WSGI and
ASGI servers), the instrumentation classes (``Counter``, ``Histogram`` … with their value
backends) and three default collectors on a global registry. nodeagent builds metric families,
registers one collector on its own registry and encodes the text format itself
(:mod:`nodeagent.metrics.exposition`): the package is registered lazily (:mod:`nodeagent.lazypkg`)
and only ``metrics_core``, ``samples``, ``registry`` and ``process_collector`` are imported: 23
modules and 0.9 MiB of Python objects less in ``serve`` (``bench/serve/import_costs.py``). The exposition
module is imported on first use: an OpenMetrics-only scrape, a family type the lean encoder hands
over. Code that does ``import prometheus_client`` and uses a name of its ``__init__`` still gets
the whole library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nodeagent.lazypkg import lazy_package

# public names of prometheus_client's __init__ that are plain re-exports of a submodule's
lazy_package("prometheus_client", {"Metric": "metrics_core", "CollectorRegistry": "registry",
                                   "ProcessCollector": "process_collector", "generate_latest": "exposition",
                                   "CONTENT_TYPE_LATEST": "exposition"})

# After lazy_package: these must not run the package __init__.
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.process_collector import ProcessCollector  # noqa: E402
from prometheus_client.registry import Collector, CollectorRegistry  # noqa: E402
from prometheus_client.samples import Sample  # noqa: E402

__all__ = ["Collector", "CollectorRegistry", "CounterMetricFamily", "GaugeMetricFamily", "Metric", "ProcessCollector",
           "Sample", "choose_encoder", "generate_latest", "text_string_to_metric_families"]

Encoder = Callable[[Collector], bytes]


def choose_encoder(accept: str) -> tuple[Encoder, str]:
    """prometheus_client's content negotiation: (encoder, content type) for an ``Accept`` header."""
    from prometheus_client.exposition import choose_encoder as choose

    return choose(accept)


def generate_latest(registry: Collector) -> bytes:
    """prometheus_client's text-format encoder (0.0.4)."""
    from prometheus_client.exposition import generate_latest as generate

    return generate(registry)  # type: ignore[arg-type]


def text_string_to_metric_families(text: str) -> Iterable[Metric]:
    """prometheus_client's parser of the text format."""
    from prometheus_client.parser import text_string_to_metric_families as parse

    return parse(text)
