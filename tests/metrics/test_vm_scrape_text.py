"""The VM collector writes a scrape's batched lines for all domains at once (``_ScrapeText``); the
text is byte for byte what writing them domain by domain gives, whatever the scrape holds: fresh
values each scrape, a record with a float or a missing key among the others, a domain that gains
a disk, a domain that goes away. The values themselves are checked against prometheus_client's
families in test_vm_encoding.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from nodeagent.metrics import vm
from nodeagent.metrics.exposition import TextFamily, render_text
from nodeagent.metrics.vm import VmCollector
from nodeagent.sources.libvirt_source import DomainSample, DomainXml, parse_domain_stats
from tests.metrics.stubs import StubLibvirt
from tests.support.factories import make_inventory

CAPTURED = json.loads((Path(__file__).parent / "data" / "qemu_stats_record.json").read_text())
XML = DomainXml(vcpus=2, vcpu_cpuset=None, vcpupins={}, hugepages=False, hostdev_pci=[], kubevirt=True)


def _record(index: int, scrape: int, *, disks: int = 1) -> dict[str, Any]:
    """The captured record with 2 vCPUs and ``disks`` disks, every counter different per domain and scrape."""
    record = dict(CAPTURED)
    record.update({"vcpu.current": 2, "vcpu.maximum": 2, "block.count": disks})
    record.update({f"vcpu.1.{k[7:]}": v for k, v in CAPTURED.items() if k.startswith("vcpu.0.")})
    for i in range(1, disks):
        record.update({f"block.{i}.{k[8:]}": v for k, v in CAPTURED.items() if k.startswith("block.0.")})
        record[f"block.{i}.name"] = f"vd{'abcdefgh'[i]}"
    seed = 7919 * (index + 1) + 104729 * scrape
    for n, key in enumerate(sorted(record)):
        if type(record[key]) is int and key.endswith((".time", ".delay", ".wait", ".bytes", ".reqs", ".times",
                                                      ".pkts", ".rss", "balloon.current")):
            # whole seconds, zero, big and ordinary values, all changing from scrape to scrape
            record[key] = (0, 5_000_000_000, 10**15 + seed, seed * 1_000_003 + n)[(n + seed) % 4]
    return record


def _sample(index: int, record: dict[str, Any]) -> DomainSample:
    return parse_domain_stats(f"team-{index % 3}_vm-{index}", f"uuid-{index}", index + 1, record, xml=XML,
                              driver="QEMU")


def _text(collector: VmCollector) -> bytes:
    return render_text([f for f in collector.collect() if isinstance(f, TextFamily) and f.lines])


def _domain_by_domain(monkeypatch: pytest.MonkeyPatch, scrapes: list[list[DomainSample]]) -> list[bytes]:
    """The same scrapes with the all-at-once path refused: every domain written on its own."""
    with monkeypatch.context() as patch:
        patch.setattr(vm._ScrapeText, "write", lambda *_args: False)
        return _run(scrapes)


def _run(scrapes: list[list[DomainSample]], *, check: Callable[[VmCollector], None] | None = None) -> list[bytes]:
    """Each scrape's VM text from one collector; ``check`` looks at the collector after each."""
    inv = make_inventory()
    source = StubLibvirt([])
    collector = VmCollector(lambda: [source], lambda: inv)  # type: ignore[list-item]
    texts = []
    for samples in scrapes:
        source.samples = samples
        texts.append(_text(collector))
        if check is not None:
            check(collector)
    return texts


def _wrote_at_once(collector: VmCollector) -> None:
    assert collector._scrape_text is not None  # the all-at-once path wrote this scrape


def test_all_domains_at_once_is_what_domain_by_domain_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    scrapes = [[_sample(i, _record(i, scrape)) for i in range(6)] for scrape in range(3)]
    at_once = _run(scrapes, check=_wrote_at_once)
    assert at_once == _domain_by_domain(monkeypatch, scrapes)
    assert len(set(at_once)) == 3  # the values changed each scrape, and so did the text
    first = at_once[0].decode()
    # the families keep domain order, whole seconds are written as integers
    vcpu_lines = [line for line in first.splitlines() if line.startswith("nodeagent_vm_vcpu_seconds_total")]
    assert [line.split('domain="')[1].split('"')[0] for line in vcpu_lines] == [
        f"team-{i % 3}_vm-{i}" for i in range(6) for _ in range(2)]
    assert any(line.endswith("} 5") for line in vcpu_lines) and any(line.endswith("} 0") for line in vcpu_lines)


def test_a_record_that_does_not_fit_sends_the_scrape_domain_by_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    odd = _record(2, 0)
    odd["balloon.rss"] = 1.5  # a float from an odd driver (written as 1 KiB)
    missing = _record(4, 1)
    del missing["vcpu.1.delay"]  # a vCPU without delay in this scrape: wait instead
    scrapes = [
        [_sample(i, odd if i == 2 else _record(i, 0)) for i in range(5)],
        [_sample(i, missing if i == 4 else _record(i, 1)) for i in range(5)],
        [_sample(i, _record(i, 2)) for i in range(5)],
    ]
    texts = _run(scrapes)
    assert texts == _domain_by_domain(monkeypatch, scrapes)
    assert b'name="vm-2",state="rss"} 1024\n' in texts[0]


def test_domains_that_change_shape_come_and_go(monkeypatch: pytest.MonkeyPatch) -> None:
    scrapes = [
        [_sample(i, _record(i, 0)) for i in range(4)],
        [_sample(i, _record(i, 1, disks=2 if i == 1 else 1)) for i in range(4)],  # vm-1 gains a disk
        [_sample(i, _record(i, 2, disks=2 if i == 1 else 1)) for i in (0, 1, 3)],  # vm-2 goes away
        [_sample(i, _record(i, 3)) for i in (3, 0, 1, 5)],  # another order, vm-1 loses its disk, vm-5 is new
    ]
    texts = _run(scrapes)
    assert texts == _domain_by_domain(monkeypatch, scrapes)
    assert b'name="vm-1",device="vdb",direction="read"}' in texts[1]
    assert b'name="vm-2"' not in texts[2] and b'device="vdb"' not in texts[3]


def test_seconds_are_the_exact_decimal_of_the_nanoseconds() -> None:
    nanoseconds = [0, 1, 999, 10**9, 5 * 10**9, 2_670_000_000, 532_956_559, 300_000_000, 10**18 + 1,
                   123_456_789_012_345_678, 2**64 - 1, 10**23 + 7, -5, -(10**9), -1_500_000_000]
    texts = vm._seconds_text(nanoseconds)
    assert texts == ["0", "0.000000001", "0.000000999", "1", "5", "2.67", "0.532956559", "0.3",
                     "1000000000.000000001", "123456789.012345678", "18446744073.709551615",
                     "100000000000000.000000007", "-0.000000005", "-1", "-1.5"]
    for ns, text in zip(nanoseconds, texts, strict=True):
        assert Fraction(text) == Fraction(ns, 10**9)  # exactly what libvirt counted
        assert float(text) == ns / 10**9  # and Prometheus reads the correctly rounded float
    assert vm._seconds_text([]) == []
