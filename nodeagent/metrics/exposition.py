"""A lean encoder for the Prometheus text format (0.0.4), for the scrape path.

prometheus_client's ``generate_latest`` spends ~13 µs per sample re-validating and re-escaping
every label name; with a hundred VMs that alone is slower than node_exporter's whole scrape. The
families nodeagent emits are plain gauges and counters with label names fixed in code, so this
encoder only escapes label *values* (the one part that comes from the host) and formats numbers.

Anything it does not handle (other metric types, ``_created`` samples) is handed to
prometheus_client for that family, so the output is always complete. :class:`TextRenderer`
reuses the text of a family object it rendered in the previous scrape: inventory-derived
collectors hand out the same (never mutated) objects until the Inventory changes. tests/metrics verifies that
both encoders produce the same families, samples and values. OpenMetrics requests still go
through prometheus_client.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    if "\\" in text or "\n" in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n")
    return text


def format_value(value: float) -> str:
    """A sample value as Prometheus parses it: integers exactly, floats by repr, +Inf/-Inf/NaN."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


class _One:
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def render_family(metric: Metric) -> str:
    if metric.type == "gauge":
        name = metric.name
    elif metric.type == "counter":
        name = metric.name + "_total"
    else:
        return generate_latest(_One(metric)).decode()  # type: ignore[arg-type]
    if any(s.name != name or s.timestamp is not None for s in metric.samples):
        return generate_latest(_One(metric)).decode()  # type: ignore[arg-type]
    lines = [f"# HELP {name} {_escape_help(metric.documentation)}\n# TYPE {name} {metric.type}\n"]
    append = lines.append
    for sample in metric.samples:
        labels = sample.labels
        if labels:
            inner = ",".join([f'{k}="{_escape_value(v)}"' for k, v in labels.items()])
            append(f"{name}{{{inner}}} {format_value(sample.value)}\n")
        else:
            append(f"{name} {format_value(sample.value)}\n")
    return "".join(lines)


def render_text(families: Iterable[Metric]) -> bytes:
    """The text-format exposition of ``families``."""
    return "".join(render_family(m) for m in families).encode()


class TextRenderer:
    """``render_text`` that reuses the previous scrape's text for the very same family objects."""

    def __init__(self) -> None:
        self._previous: dict[int, tuple[Metric, str]] = {}
        self._lock = threading.Lock()

    def render(self, families: Iterable[Metric]) -> bytes:
        with self._lock:
            previous = self._previous
        current: dict[int, tuple[Metric, str]] = {}
        parts = []
        for metric in families:
            hit = previous.get(id(metric))
            text = hit[1] if hit is not None and hit[0] is metric else render_family(metric)
            current[id(metric)] = (metric, text)  # holding the object keeps its id from being reused
            parts.append(text)
        with self._lock:
            self._previous = current
        return "".join(parts).encode()
