"""A lean encoder for the Prometheus text format (0.0.4), for the scrape path.

prometheus_client's ``generate_latest`` spends ~13 µs per sample re-validating and re-escaping
every label name; with a hundred VMs that alone is slower than node_exporter's whole scrape. The
families nodeagent emits are plain gauges and counters with label names fixed in code, so this
encoder only escapes label *values* (the one part that comes from the host) and formats numbers.

Anything it does not handle (other metric types, ``_created`` samples) is handed to
prometheus_client for that family, so the output is always complete. Collectors with thousands
of series per scrape (the VMs) skip the family objects altogether: they fill a
:class:`TextFamily` with finished lines, label strings cached per domain. :class:`TextRenderer`
reuses the text of a family object it rendered in the previous scrape: inventory-derived
collectors hand out the same (never mutated) objects until the Inventory changes. tests/metrics verifies that
both encoders produce the same families, samples and values. OpenMetrics requests still go
through prometheus_client.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator

from nodeagent.metrics.prom import Metric, Sample, generate_latest, text_string_to_metric_families

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label_value(value: str) -> str:
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


class TextFamily(Metric):
    """A gauge or counter whose samples are already exposition lines (``name{labels} value\\n``).

    The collector appends finished lines to ``lines``; the text encoder writes them as they are.
    ``samples`` parses them back (prometheus_client's own parser, on demand) for whatever still
    needs sample objects: OpenMetrics requests, the encoder-equivalence tests.
    """

    def __init__(self, name: str, documentation: str, typ: str) -> None:  # not super().__init__: it sets samples
        if typ not in ("gauge", "counter"):
            raise ValueError(f"TextFamily holds gauges and counters, not {typ}")
        self.name = name
        self.documentation = documentation
        self.unit = ""
        self.type = typ
        self.sample_name = name + "_total" if typ == "counter" else name
        self.lines: list[str] = []

    def header(self) -> str:
        return (f"# HELP {self.sample_name} {_escape_help(self.documentation)}\n"
                f"# TYPE {self.sample_name} {self.type}\n")

    def text(self) -> str:
        return self.header() + "".join(self.lines)

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        return [sample for family in text_string_to_metric_families(self.text()) for sample in family.samples]


def has_samples(metric: Metric) -> bool:
    """Whether a family has anything to export (without parsing a TextFamily back)."""
    return bool(metric.lines if isinstance(metric, TextFamily) else metric.samples)


class _One:
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def render_family(metric: Metric) -> str:
    if isinstance(metric, TextFamily):
        return metric.text()
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
            inner = ",".join([f'{k}="{escape_label_value(v)}"' for k, v in labels.items()])
            append(f"{name}{{{inner}}} {format_value(sample.value)}\n")
        else:
            append(f"{name} {format_value(sample.value)}\n")
    return "".join(lines)


def render_text(families: Iterable[Metric]) -> bytes:
    """The text-format exposition of ``families``."""
    return b"".join(render_family(m).encode() for m in families)


class TextRenderer:
    """``render_text`` that reuses the previous scrape's bytes for the very same family objects.

    Each family is encoded on its own: one non-ASCII help text would otherwise widen the whole
    scrape's string to UCS-2 and make joining and encoding it several times slower.
    """

    def __init__(self) -> None:
        self._previous: dict[int, tuple[Metric, bytes]] = {}
        self._lock = threading.Lock()

    def render(self, families: Iterable[Metric]) -> bytes:
        with self._lock:
            previous = self._previous
        current: dict[int, tuple[Metric, bytes]] = {}
        parts: list[bytes] = []
        for metric in families:
            if isinstance(metric, TextFamily):  # new every scrape: nothing to reuse
                # its lines as they are: a VM family's are one string of up to hundreds of KB, copied once here
                parts += (metric.header().encode(), "".join(metric.lines).encode())
                continue
            hit = previous.get(id(metric))
            data = hit[1] if hit is not None and hit[0] is metric else render_family(metric).encode()
            current[id(metric)] = (metric, data)  # holding the object keeps its id from being reused
            parts.append(data)
        with self._lock:
            self._previous = current
        return b"".join(parts)
