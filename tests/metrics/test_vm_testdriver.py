"""The VM collector against libvirt's in-process ``test:///default`` driver: many domains, domains
coming and going, one bulk call per scrape, XML caching, reconnecting, ``nodeagent_gpu_assigned``.

The test driver reports only the ``state`` stats group, so per-domain counters are covered by the
real-QEMU tests in test_vm_libvirtd.py; this file is about the collector's bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.metrics import MetricsOptions, NodeMetrics, build_metrics
from nodeagent.sources.libvirt_source import LibvirtSource
from tests.support.exposition import Exposition, scrape
from tests.support.factories import make_inventory
from tests.support.libvirt import DomainSpec, LibvirtTestDriver

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")


def _metrics(tmp_path: Path, source: LibvirtSource, inv: Inventory | None = None) -> NodeMetrics:
    inventory = inv or make_inventory()
    return build_metrics(lambda: inventory, Host(str(tmp_path)), MetricsOptions(live=False, process=False),
                         libvirt=[source])


def _ours(exposition: Exposition, driver: LibvirtTestDriver, name: str) -> list[Any]:
    return [s for s in exposition.get(name) if s.labels.get("domain", "").startswith(driver.prefix)]


def test_a_hundred_kubevirt_domains(test_driver: LibvirtTestDriver, tmp_path: Path) -> None:
    names = test_driver.start_many(100)
    node_metrics = _metrics(tmp_path, LibvirtSource(test_driver.uri))
    exposition = scrape(node_metrics)
    info = {s.labels["domain"]: s.labels for s in _ours(exposition, test_driver, "nodeagent_vm_info")}
    assert set(info) == set(names)
    for name in names:
        namespace, vm_name = name.split("_", 1)
        assert (info[name]["namespace"], info[name]["name"]) == (namespace, vm_name)
        uuid = test_driver.conn.lookupByName(name).UUIDString()
        assert info[name]["uuid"] == uuid
        assert exposition.value("nodeagent_vm_state", domain=name, state="running") == 1
        assert exposition.value("nodeagent_vm_vcpus", domain=name) == 2  # from the XML: no vcpu stats here
        assert exposition.value("nodeagent_vm_hugepages_backed", domain=name) == 0
        assert exposition.value("nodeagent_vm_vcpus_pinned", domain=name) == 0
    assert exposition.value("nodeagent_collector_up", collector="vm") == 1
    assert exposition.value("nodeagent_libvirt_up", source=test_driver.uri) == 1
    node_metrics.close()


def test_plain_domains_keep_their_name(test_driver: LibvirtTestDriver, tmp_path: Path) -> None:
    (name,) = test_driver.start_many(1, kubevirt=False)
    underscore = f"{test_driver.prefix}web_01"
    test_driver.start(DomainSpec(underscore, kubevirt=False))
    exposition = scrape(_metrics(tmp_path, LibvirtSource(test_driver.uri)))
    for domain in (name, underscore):
        (info,) = exposition.get("nodeagent_vm_info", domain=domain)
        assert (info.labels["namespace"], info.labels["name"]) == ("", domain)


def test_domains_appearing_and_disappearing_between_scrapes(test_driver: LibvirtTestDriver, tmp_path: Path) -> None:
    names = test_driver.start_many(5)
    source = LibvirtSource(test_driver.uri)
    node_metrics = _metrics(tmp_path, source)
    assert {s.labels["domain"] for s in _ours(scrape(node_metrics), test_driver, "nodeagent_vm_info")} == set(names)

    test_driver.remove(names[0])
    test_driver.conn.lookupByName(names[1]).destroy()  # stopped but still defined: not running, not reported
    late = f"{test_driver.prefix}late_vm"
    test_driver.start(DomainSpec(late))
    exposition = scrape(node_metrics)
    assert {s.labels["domain"] for s in _ours(exposition, test_driver, "nodeagent_vm_info")} == {*names[2:], late}
    assert not [s for s in exposition.samples if s.labels.get("domain") in (names[0], names[1])]
    # the cached XML of the vanished domains is dropped, the newcomer's kept
    cached = set(source._xml)
    assert test_driver.conn.lookupByName(late).UUIDString() in cached
    assert test_driver.conn.lookupByName(names[1]).UUIDString() not in cached
    assert exposition.value("nodeagent_collector_up", collector="vm") == 1


def test_paused_domains_report_their_state(test_driver: LibvirtTestDriver, tmp_path: Path) -> None:
    (name,) = test_driver.start_many(1)
    test_driver.conn.lookupByName(name).suspend()
    exposition = scrape(_metrics(tmp_path, LibvirtSource(test_driver.uri)))
    assert exposition.value("nodeagent_vm_state", domain=name, state="paused") == 1
    assert len(exposition.get("nodeagent_vm_state", domain=name)) == 1  # only the current state


def test_one_bulk_stats_call_per_scrape_and_xml_cached(test_driver: LibvirtTestDriver, tmp_path: Path,
                                                       mocker: Any) -> None:
    test_driver.start_many(100)
    stats = mocker.spy(libvirt.virConnect, "getAllDomainStats")
    xml = mocker.spy(libvirt.virDomain, "XMLDesc")
    source = LibvirtSource(test_driver.uri, xml_ttl_s=3600)
    node_metrics = _metrics(tmp_path, source)
    scrape(node_metrics)
    domains = len(test_driver.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
    assert (stats.call_count, xml.call_count) == (1, domains)
    scrape(node_metrics)
    scrape(node_metrics)
    assert (stats.call_count, xml.call_count) == (3, domains)  # no per-domain calls once the XML is cached
    assert source.connects == 1  # the connection was reused


def test_xml_is_fetched_again_when_a_domain_restarts(test_driver: LibvirtTestDriver, tmp_path: Path,
                                                     mocker: Any) -> None:
    (name,) = test_driver.start_many(1)
    source = LibvirtSource(test_driver.uri, xml_ttl_s=3600)
    node_metrics = _metrics(tmp_path, source)
    scrape(node_metrics)
    dom = test_driver.conn.lookupByName(name)
    dom.destroy()
    # new config for the same domain, started again under a new domain id
    dom = test_driver.conn.defineXML(DomainSpec(name, vcpus=4, vcpupins={0: "1"}, uuid=dom.UUIDString()).xml())
    dom.create()
    exposition = scrape(node_metrics)
    assert exposition.value("nodeagent_vm_vcpus", domain=name) == 4
    assert exposition.value("nodeagent_vm_vcpus_pinned", domain=name) == 1


def test_gpu_assigned_from_hostdevs(test_driver: LibvirtTestDriver, tmp_path: Path,
                                    fixture_inventory: Callable[[str], Inventory]) -> None:
    hgx = fixture_inventory("intel-2s-8gpu")
    passthrough = [g.address for g in hgx.gpus if g.driver == "vfio-pci"]
    trainer = f"{test_driver.prefix}team-a_trainer-0"
    # two GPUs with their audio-less siblings, and a NIC VF that is not a GPU
    test_driver.start(DomainSpec(trainer, hostdevs=(passthrough[0], passthrough[1], "0000:3b:00.2")))
    test_driver.start(DomainSpec(f"{test_driver.prefix}team-b_idle"))
    exposition = scrape(_metrics(tmp_path, LibvirtSource(test_driver.uri), hgx))
    assigned = {(s.labels["pci_address"], s.labels["domain"], s.labels["namespace"], s.labels["name"])
                for s in exposition.get("nodeagent_gpu_assigned") if s.value == 1}
    namespace = f"{test_driver.prefix}team-a"
    assert assigned == {(passthrough[0], trainer, namespace, "trainer-0"),
                        (passthrough[1], trainer, namespace, "trainer-0")}


def test_a_dead_connection_is_reopened_within_the_scrape(test_driver: LibvirtTestDriver, tmp_path: Path) -> None:
    names = test_driver.start_many(3)
    source = LibvirtSource(test_driver.uri)
    node_metrics = _metrics(tmp_path, source)
    scrape(node_metrics)
    source._conn.close()  # the connection dies behind the collector's back
    exposition = scrape(node_metrics)
    assert exposition.value("nodeagent_collector_up", collector="vm") == 1
    assert {s.labels["domain"] for s in _ours(exposition, test_driver, "nodeagent_vm_info")} == set(names)
    assert source.connects == 2


def test_an_unreachable_daemon_is_down_and_the_rest_served(tmp_path: Path) -> None:
    socket_path = tmp_path / "no-such-sock"
    source = LibvirtSource(f"qemu+unix:///system?socket={socket_path}")
    exposition = scrape(_metrics(tmp_path, source))
    assert exposition.value("nodeagent_collector_up", collector="vm") == 0
    assert exposition.value("nodeagent_collector_up", collector="capacity") == 1
    assert exposition.value("nodeagent_numa_node_cpus", numa_node="0") == 4


def test_an_absent_daemon_is_not_an_error(tmp_path: Path) -> None:
    source = LibvirtSource("qemu:///system", presence=lambda: False)
    exposition = scrape(_metrics(tmp_path, source))
    assert exposition.value("nodeagent_collector_up", collector="vm") == 1
    assert exposition.get("nodeagent_vm_info") == []
    assert exposition.get("nodeagent_libvirt_up") == []


def test_one_of_two_daemons_failing(test_driver: LibvirtTestDriver, tmp_path: Path) -> None:
    names = test_driver.start_many(2)
    good = LibvirtSource(test_driver.uri)
    bad = LibvirtSource(f"qemu+unix:///system?socket={tmp_path / 'gone'}", label="launcher-gone")
    inv = make_inventory()
    node_metrics = build_metrics(lambda: inv, Host(str(tmp_path)), MetricsOptions(live=False, process=False),
                                 libvirt=[good, bad])
    exposition = scrape(node_metrics)
    assert exposition.value("nodeagent_collector_up", collector="vm") == 1
    assert exposition.value("nodeagent_libvirt_up", source="launcher-gone") == 0
    assert exposition.value("nodeagent_libvirt_up", source=test_driver.uri) == 1
    assert {s.labels["domain"] for s in _ours(exposition, test_driver, "nodeagent_vm_info")} == set(names)
