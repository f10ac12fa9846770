"""The lean text encoder says exactly what prometheus_client's would, for every family nodeagent
exports and for awkward label values and numbers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families

from nodeagent.inventory import Inventory
from nodeagent.metrics.exposition import format_value, render_text
from nodeagent.sources.nvml_source import NvmlSource
from tests.metrics.stubs import complete_metrics
from tests.metrics.test_nvml import HOST_DRIVER_GPUS, FakeGpu, FakeNvml


class Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def parsed(text: str) -> dict[str, tuple[str, str, set[tuple[str, tuple[tuple[str, str], ...], float | str]]]]:
    """family → (type, help, samples); NaN compared as a string (NaN != NaN)."""
    result = {}
    for family in text_string_to_metric_families(text):
        samples = {(s.name, tuple(sorted(s.labels.items())), "NaN" if math.isnan(s.value) else float(s.value))
                   for s in family.samples}
        result[family.name] = (family.type, family.documentation, samples)
    return result


def both(families: list[Metric]) -> tuple[str, str]:
    lean = render_text(families).decode()
    reference = generate_latest(Families(families)).decode()  # type: ignore[arg-type]
    return lean, reference


def test_the_complete_exposition_matches_prometheus_client(fixture_inventory: Callable[[str], Inventory],
                                                           tmp_path: Path, mocker: Any) -> None:
    FakeNvml(mocker, [FakeGpu(a) for a in HOST_DRIVER_GPUS])
    node_metrics = complete_metrics(fixture_inventory("intel-2s-8gpu"), tmp_path, NvmlSource())
    families = [f for f in node_metrics.registry.collect() if f.name != "nodeagent_collector_duration_seconds"
                and not f.name.startswith("process_")]  # these change between two collections
    lean, reference = both(families)
    assert parsed(lean) == parsed(reference)
    assert len(parsed(lean)) > 50


def test_awkward_label_values_and_help() -> None:
    gauge = GaugeMetricFamily("test_gauge", 'help with a \\ backslash\nand a newline', labels=["a", "b"])
    gauge.add_metric(['quote " here', "back\\slash"], 1)
    gauge.add_metric(["new\nline", "ünïcödé ✓"], 2.5)
    gauge.add_metric(["", "{}=,"], -0.0)
    counter = CounterMetricFamily("test_things", "counted things", labels=["x"])
    counter.add_metric(["1"], 12345678901234567)
    lean, reference = both([gauge, counter])
    assert parsed(lean) == parsed(reference)


@pytest.mark.parametrize("value", [0, 1, -3, 1.5, 1e-9, 2.0**60, 1e15, 123456789.123, float("inf"), float("-inf"),
                                   float("nan"), True])
def test_numbers_round_trip(value: float) -> None:
    gauge = GaugeMetricFamily("test_value", "a number", value=value)
    (family,) = text_string_to_metric_families(render_text([gauge]).decode())
    got = family.samples[0].value
    assert (math.isnan(got) and math.isnan(value)) or got == float(value)


def test_integers_are_written_exactly() -> None:
    assert format_value(2**53 + 1) == str(2**53 + 1)
    assert format_value(65536.0) == "65536"
    assert format_value(0.25) == "0.25"


def test_other_types_fall_back_to_prometheus_client() -> None:
    info = InfoMetricFamily("test_build", "build facts", value={"version": "1"})
    histogram = HistogramMetricFamily("test_latency_seconds", "latency", buckets=[("0.1", 3), ("+Inf", 5)],
                                      sum_value=1.5)
    created = CounterMetricFamily("test_requests", "requests", value=4, created=1700000000.0)
    lean, reference = both([info, histogram, created])
    assert lean == reference


# What Prometheus 2.x sends on every scrape
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


@pytest.mark.parametrize(("accept", "openmetrics"), [
    (PROMETHEUS_ACCEPT, False),
    ("", False),
    ("text/plain", False),
    ("application/openmetrics-text; version=1.0.0", True),
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75", True),
])
def test_format_negotiation(accept: str, openmetrics: bool, tmp_path: Path) -> None:
    from nodeagent.host import Host
    from nodeagent.metrics import MetricsOptions, build_metrics, wants_openmetrics_only
    from tests.support.factories import make_inventory

    assert wants_openmetrics_only(accept) is openmetrics
    inv = make_inventory()
    body, content_type = build_metrics(lambda: inv, Host(str(tmp_path)), MetricsOptions(live=False)).exposition(accept)
    assert content_type.startswith("application/openmetrics-text" if openmetrics else "text/plain; version=0.0.4")
    assert body.endswith(b"# EOF\n") is openmetrics
    assert b"nodeagent_kvm_available 1" in body


def test_inventory_families_are_rendered_once_per_inventory(tmp_path: Path, mocker: Any) -> None:
    from dataclasses import replace

    import nodeagent.metrics.exposition as exposition_module
    from nodeagent.host import Host
    from nodeagent.metrics import MetricsOptions, build_metrics
    from tests.support.factories import make_inventory

    first = make_inventory()
    current = [first]
    node_metrics = build_metrics(lambda: current[0], Host(str(tmp_path)), MetricsOptions(live=False, process=False))
    spy = mocker.spy(exposition_module, "render_family")
    one = node_metrics.text()
    rendered_first = spy.call_count
    two = node_metrics.text()
    # only the self-metrics (collector_up, collector_duration_seconds) are new objects on the second scrape
    assert spy.call_count - rendered_first == 2
    assert one.split(b"# HELP nodeagent_collector_up")[0] == two.split(b"# HELP nodeagent_collector_up")[0]
    current[0] = replace(first, prep=replace(first.prep, reboot_required=True))
    three = node_metrics.text()
    assert b"nodeagent_reboot_required 1\n" in three and b"nodeagent_reboot_required 0\n" in two
