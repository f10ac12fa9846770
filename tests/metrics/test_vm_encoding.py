"""The VM collector's own text encoding says exactly what prometheus_client families built from the
parsed record would: same series, labels and values, on a real QEMU guest's full stats record.

The reference here is built independently, from the typed views of DomainSample (``vcpus``,
``blocks``, ``nets``, ``balloon_kib``) through prometheus_client's families and ``generate_latest``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from nodeagent.metrics.exposition import TextFamily, render_text
from nodeagent.metrics.label_values import pci_bus_id
from nodeagent.metrics.vm import MEMORY_STATES, VmCollector
from nodeagent.sources.libvirt_source import DomainSample, DomainXml, parse_domain_stats
from tests.metrics.stubs import StubLibvirt
from tests.metrics.test_sources import REAL_STATS
from tests.support.factories import make_inventory

# getAllDomainStats of the tests' QEMU 7.2 guest under libvirt 9.0: every KVM vCPU statistic.
CAPTURED = json.loads((Path(__file__).parent / "data" / "qemu_stats_record.json").read_text())


def _widened() -> dict[str, Any]:
    """The captured record with 3 vCPUs, two disks, two NICs and odd values mixed in."""
    record = dict(CAPTURED)
    record.update({"vcpu.current": 3, "vcpu.maximum": 4, "block.count": 3, "net.count": 2,
                   "balloon.available": 4015000, "balloon.unused": 1.5})  # a float from an odd driver
    for i in (1, 2):
        record.update({f"vcpu.{i}.{k[7:]}": v for k, v in CAPTURED.items() if k.startswith("vcpu.0.")})
    del record["vcpu.2.delay"]  # an older libvirt: wait only
    record.update({"vcpu.1.time": 10**18 + 1, "vcpu.2.time": 3_000_000_000})  # huge, and whole seconds
    for i in (1, 2):
        record.update({f"block.{i}.{k[8:]}": v for k, v in CAPTURED.items() if k.startswith("block.0.")})
    record.update({f"net.1.{k[6:]}": v for k, v in CAPTURED.items() if k.startswith("net.0.")})
    record.update({"block.1.name": "vdb", "block.1.rd.bytes": 7, "block.1.wr.bytes": 9,
                   "block.2.name": "vdb", "block.2.backingIndex": 2, "block.2.rd.bytes": 99,  # backing chain
                   "net.1.name": 'tap"odd\\', "net.1.rx.bytes": 5, "net.1.tx.drop": 1})
    return record


def _reference(samples: list[DomainSample], gpus: set[str]) -> list[Metric]:
    """The VM families the way prometheus_client would build them from the typed views."""
    vm = ["domain", "namespace", "name"]
    d, dv, dd, di = vm, [*vm, "vcpu"], [*vm, "device", "direction"], [*vm, "interface", "direction"]
    info = GaugeMetricFamily("nodeagent_vm_info", "", labels=["domain", "namespace", "name", "uuid"])
    state = GaugeMetricFamily("nodeagent_vm_state", "", labels=[*vm, "state"])
    vcpus = GaugeMetricFamily("nodeagent_vm_vcpus", "", labels=d)
    cpu = CounterMetricFamily("nodeagent_vm_cpu_seconds", "", labels=d)
    vcpu_time = CounterMetricFamily("nodeagent_vm_vcpu_seconds", "", labels=dv)
    vcpu_wait = CounterMetricFamily("nodeagent_vm_vcpu_wait_seconds", "", labels=dv)
    memory = GaugeMetricFamily("nodeagent_vm_memory_bytes", "", labels=[*vm, "state"])
    block = [CounterMetricFamily(n, "", labels=dd) for n in
             ("nodeagent_vm_block_bytes", "nodeagent_vm_block_requests", "nodeagent_vm_block_time_seconds")]
    net = [CounterMetricFamily(n, "", labels=di) for n in
           ("nodeagent_vm_network_bytes", "nodeagent_vm_network_packets", "nodeagent_vm_network_errors",
            "nodeagent_vm_network_drops")]
    hugepages = GaugeMetricFamily("nodeagent_vm_hugepages_backed", "", labels=d)
    pinned = GaugeMetricFamily("nodeagent_vm_vcpus_pinned", "", labels=d)
    assigned = GaugeMetricFamily("nodeagent_gpu_assigned", "",
                                 labels=["pci_address", "pci_bus_id", "domain", "namespace", "name"])
    for s in samples:
        namespace, name = s.namespace_name
        ids = [s.name, namespace, name]
        info.add_metric([s.name, namespace, name, s.uuid], 1)
        state.add_metric([*ids, s.state_name], 1)
        vcpus.add_metric(ids, s.vcpu_count)
        cpu.add_metric(ids, s.cpu_time_ns / 10**9)
        for v in s.vcpus:
            vcpu_time.add_metric([*ids, str(v.index)], v.time_ns / 10**9)
            vcpu_wait.add_metric([*ids, str(v.index)], (v.delay_ns if v.delay_ns is not None else v.wait_ns) / 10**9)
        for key, label in MEMORY_STATES.items():
            if key in s.balloon_kib:
                memory.add_metric([*ids, label], s.balloon_kib[key] * 1024)
        for b in s.blocks:
            for direction, values in (("read", (b.read_bytes, b.read_requests, b.read_time_ns / 10**9)),
                                      ("write", (b.write_bytes, b.write_requests, b.write_time_ns / 10**9))):
                for family, value in zip(block, values, strict=True):
                    family.add_metric([*ids, b.name, direction], value)
        for n in s.nets:
            for direction, values in (("receive", (n.rx_bytes, n.rx_packets, n.rx_errors, n.rx_drops)),
                                      ("transmit", (n.tx_bytes, n.tx_packets, n.tx_errors, n.tx_drops))):
                for family, value in zip(net, values, strict=True):
                    if value is not None:
                        family.add_metric([*ids, n.name, direction], value)
        assert s.xml is not None
        hugepages.add_metric(ids, 1 if s.xml.hugepages else 0)
        pinned.add_metric(ids, len(s.xml.vcpupins))
        for address in s.xml.hostdev_pci:
            if address in gpus:
                assigned.add_metric([address, pci_bus_id(address), s.name, namespace, name], 1)
    return [info, state, vcpus, cpu, vcpu_time, vcpu_wait, memory, *block, *net, hugepages, pinned, assigned]


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float | str]:
    series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in series, f"duplicate series {key}"
            series[key] = "NaN" if math.isnan(s.value) else s.value
    return series


def test_vm_text_is_what_prometheus_client_would_say() -> None:
    inv = make_inventory()
    gpu = inv.gpus[0].address if inv.gpus else "0000:18:00.0"
    xml = DomainXml(vcpus=3, vcpu_cpuset=None, vcpupins={0: [0], 1: [1]}, hugepages=True, hostdev_pci=[gpu],
                    kubevirt=True)
    samples = [parse_domain_stats("team-a_big-0", "AB-1", 4, _widened(), xml=xml, driver="QEMU"),
               parse_domain_stats("team-b_small-1", "ab-2", 5, REAL_STATS, xml=xml, driver="QEMU"),
               parse_domain_stats("web-1", "ab-3", 6, CAPTURED, driver="QEMU",
                                  xml=DomainXml(1, None, {}, False, [], kubevirt=False))]
    collector = VmCollector(lambda: [StubLibvirt(samples)], lambda: inv)  # type: ignore[list-item]
    families = [f for f in collector.collect() if isinstance(f, TextFamily) and f.lines
                and f.name != "nodeagent_libvirt_up"]
    ours = render_text(families).decode()
    reference = generate_latest(_Families(_reference(samples, {g.address for g in inv.gpus}))).decode()
    assert _series(ours) == _series(reference)
    assert len(_series(ours)) > 60
    # the typed view and the encoder skipped the same things: the backing-chain entry, the missing delay
    assert 'device="vdb",direction="read"} 7\n' in ours and "} 99\n" not in ours
    assert ('nodeagent_vm_vcpu_wait_seconds_total{domain="team-a_big-0",namespace="team-a",name="big-0",vcpu="2"} 0\n'
            in ours)
    # the same text a second time, from the cached label strings
    again = render_text([f for f in collector.collect() if isinstance(f, TextFamily) and f.lines
                         and f.name != "nodeagent_libvirt_up"]).decode()
    assert again == ours


def test_text_families_parse_back_for_openmetrics() -> None:
    family = TextFamily("test_things", "things", "counter")
    family.lines.append('test_things_total{a="x\\"y"} 3\n')
    (sample,) = family.samples
    assert (sample.name, sample.labels, sample.value) == ("test_things_total", {"a": 'x"y'}, 3.0)
    assert render_text([family]).decode() == (
        '# HELP test_things_total things\n# TYPE test_things_total counter\ntest_things_total{a="x\\"y"} 3\n')
