"""VM series from libvirt: one bulk stats call per libvirt daemon per scrape, plus NUMA placement.

Also exports ``nodeagent_gpu_assigned``: a GPU passed through to a VM is a ``<hostdev>`` in the
domain's XML, and libvirt is the only place that says which VM holds it.

Series of a domain that disappeared simply stop (Prometheus marks them stale); a domain that
appears is reported from its first scrape. Counters are libvirt's own (they reset when the
domain restarts, which Prometheus' ``rate`` handles).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from nodeagent.inventory import Inventory
from nodeagent.metrics.base import InventoryProvider
from nodeagent.metrics.labels import numa_label
from nodeagent.metrics.placement import (
    DEFAULT_MAX_REMOTE_RATIO,
    PlacementReader,
    numa_aligned,
    numa_nodes_of,
    pinned_vcpus,
    vcpu_allowed_cpus,
)
from nodeagent.sources import SourceUnavailableError
from nodeagent.sources.libvirt_source import STATE_NAMES, DomainSample, LibvirtSource

log = logging.getLogger(__name__)

NS = 1e-9

# balloon.* field (KiB) → the state label of nodeagent_vm_memory_bytes
MEMORY_STATES = {
    "current": "actual",  # what the balloon currently gives the guest
    "maximum": "maximum",
    "available": "available",  # as the guest sees it (needs the guest's balloon driver)
    "usable": "usable",
    "unused": "unused",
    "disk_caches": "disk_caches",
    "rss": "rss",  # resident memory of the QEMU process on the host
}


class VmCollectorError(SourceUnavailableError):
    """Every libvirt daemon that should have answered failed."""


@dataclass
class _Families:
    info: GaugeMetricFamily
    state: GaugeMetricFamily
    vcpus: GaugeMetricFamily
    cpu: CounterMetricFamily
    vcpu_time: CounterMetricFamily
    vcpu_wait: CounterMetricFamily
    memory: GaugeMetricFamily
    block_bytes: CounterMetricFamily
    block_requests: CounterMetricFamily
    block_time: CounterMetricFamily
    net_bytes: CounterMetricFamily
    net_packets: CounterMetricFamily
    net_errors: CounterMetricFamily
    net_drops: CounterMetricFamily
    numa_memory: GaugeMetricFamily
    numa_aligned: GaugeMetricFamily
    hugepages: GaugeMetricFamily
    pinned: GaugeMetricFamily
    assigned: GaugeMetricFamily
    source_up: GaugeMetricFamily

    @classmethod
    def new(cls, max_remote_ratio: float = DEFAULT_MAX_REMOTE_RATIO) -> _Families:
        d, dv = ["domain"], ["domain", "vcpu"]
        return cls(
            info=GaugeMetricFamily("nodeagent_vm_info", "A running VM (libvirt domain); KubeVirt names split.",
                                   labels=["domain", "namespace", "name", "uuid"]),
            state=GaugeMetricFamily("nodeagent_vm_state",
                                    "The domain's libvirt state (running, paused, blocked, crashed, …), "
                                    "as the label of a single series.",
                                    labels=["domain", "state"]),
            vcpus=GaugeMetricFamily("nodeagent_vm_vcpus", "vCPUs the domain currently has.", labels=d),
            cpu=CounterMetricFamily("nodeagent_vm_cpu_seconds", "CPU time the domain's QEMU process used.", labels=d),
            vcpu_time=CounterMetricFamily("nodeagent_vm_vcpu_seconds", "CPU time each vCPU ran.", labels=dv),
            vcpu_wait=CounterMetricFamily(
                "nodeagent_vm_vcpu_wait_seconds",
                "Time each vCPU was runnable but waited for a host CPU (the guest's steal time).", labels=dv),
            memory=GaugeMetricFamily("nodeagent_vm_memory_bytes",
                                     "Domain memory by state (balloon actual/maximum, guest-reported available/"
                                     "usable/unused/disk_caches, host rss).", labels=["domain", "state"]),
            block_bytes=CounterMetricFamily("nodeagent_vm_block_bytes", "Bytes the VM read from / wrote to a disk.",
                                            labels=["domain", "device", "direction"]),
            block_requests=CounterMetricFamily("nodeagent_vm_block_requests", "Disk requests of the VM.",
                                               labels=["domain", "device", "direction"]),
            block_time=CounterMetricFamily("nodeagent_vm_block_time_seconds",
                                           "Time spent on the VM's disk requests (divide by requests for latency).",
                                           labels=["domain", "device", "direction"]),
            net_bytes=CounterMetricFamily("nodeagent_vm_network_bytes", "Bytes through a VM network interface.",
                                          labels=["domain", "interface", "direction"]),
            net_packets=CounterMetricFamily("nodeagent_vm_network_packets", "Packets through a VM interface.",
                                            labels=["domain", "interface", "direction"]),
            net_errors=CounterMetricFamily("nodeagent_vm_network_errors", "Errors on a VM network interface.",
                                           labels=["domain", "interface", "direction"]),
            net_drops=CounterMetricFamily("nodeagent_vm_network_drops", "Packets dropped on a VM interface.",
                                          labels=["domain", "interface", "direction"]),
            numa_memory=GaugeMetricFamily("nodeagent_vm_numa_memory_bytes",
                                          "Resident guest memory of the VM's QEMU process on each NUMA node "
                                          "(/proc/<pid>/numa_maps: anonymous, memfd and hugetlbfs mappings).",
                                          labels=["domain", "numa_node"]),
            numa_aligned=GaugeMetricFamily("nodeagent_vm_numa_aligned",
                                           "1 when the VM's memory is on the NUMA nodes of the CPUs its vCPUs may "
                                           f"run on (at most {max_remote_ratio:.0%} elsewhere).", labels=d),
            hugepages=GaugeMetricFamily("nodeagent_vm_hugepages_backed", "1 when the VM's RAM is backed by hugepages.",
                                        labels=d),
            pinned=GaugeMetricFamily("nodeagent_vm_vcpus_pinned",
                                     "vCPUs the domain XML pins to a subset of the host's CPUs (vcpupin / cpuset).",
                                     labels=d),
            assigned=GaugeMetricFamily("nodeagent_gpu_assigned", "1 for each GPU passed through to a running VM.",
                                       labels=["pci_address", "domain", "namespace", "name"]),
            source_up=GaugeMetricFamily("nodeagent_libvirt_up",
                                        "1 when the libvirt daemon answered this scrape's stats call.",
                                        labels=["source"]),
        )

    def all(self) -> list[Metric]:
        return [self.info, self.state, self.vcpus, self.cpu, self.vcpu_time, self.vcpu_wait, self.memory,
                self.block_bytes, self.block_requests, self.block_time, self.net_bytes, self.net_packets,
                self.net_errors, self.net_drops, self.numa_memory, self.numa_aligned, self.hugepages, self.pinned,
                self.assigned, self.source_up]


@dataclass(frozen=True)
class _HostView:
    """What every domain of one scrape is compared with, computed once per scrape."""

    inventory: Inventory
    online: list[int]
    gpus: frozenset[str]

    @classmethod
    def of(cls, inv: Inventory) -> _HostView:
        online = list(inv.cpu.online) or sorted({c for node in inv.numa for c in node.cpus})
        return cls(inv, online, frozenset(g.address for g in inv.gpus))


class VmCollector:
    name = "vm"
    timeout_s: float | None = 10.0

    def __init__(self, sources: Callable[[], Sequence[LibvirtSource]], inventory: InventoryProvider,
                 placement: PlacementReader | None = None, *,
                 max_remote_ratio: float = DEFAULT_MAX_REMOTE_RATIO) -> None:
        self._sources = sources
        self._inventory = inventory
        self._placement = placement
        self._max_remote_ratio = max_remote_ratio

    def collect(self) -> Iterator[Metric]:
        inv = self._inventory()
        host = _HostView.of(inv)
        families = _Families.new(self._max_remote_ratio)
        attempted, failures = 0, []
        seen_names: set[str] = set()
        seen_uuids: set[str] = set()
        for source in self._sources():
            if not source.present():
                continue
            attempted += 1
            try:
                samples = source.domains()
            except SourceUnavailableError as exc:
                failures.append(str(exc))
                families.source_up.add_metric([source.name], 0.0)
                continue
            families.source_up.add_metric([source.name], 1.0)
            for sample in samples:
                if sample.name in seen_names:
                    log.warning("domain %s reported by more than one libvirt daemon; keeping the first", sample.name)
                    continue
                seen_names.add(sample.name)
                seen_uuids.add(sample.uuid)
                self._add_domain(families, sample, host)
        if self._placement is not None:
            self._placement.forget(seen_uuids)
        if attempted and len(failures) == attempted:
            raise VmCollectorError("; ".join(failures))
        yield from families.all()

    def _add_domain(self, f: _Families, s: DomainSample, host: _HostView) -> None:
        domain = s.name
        namespace, name = s.namespace_name
        f.info.add_metric([domain, namespace, name, s.uuid], 1.0)
        if s.state is not None:  # one series per VM: its current state
            f.state.add_metric([domain, STATE_NAMES.get(s.state, "unknown")], 1.0)
        vcpu_count = s.vcpu_count
        if vcpu_count is not None:
            f.vcpus.add_metric([domain], vcpu_count)
        if s.cpu_time_ns is not None:
            f.cpu.add_metric([domain], s.cpu_time_ns * NS)
        for vcpu in s.vcpus:
            if vcpu.time_ns is not None:
                f.vcpu_time.add_metric([domain, str(vcpu.index)], vcpu.time_ns * NS)
            # delay (schedstat run_delay) is what the guest sees as steal; wait (sched wait_sum) is the
            # same quantity from schedstats, reported by libvirt versions before delay existed.
            waited = vcpu.delay_ns if vcpu.delay_ns is not None else vcpu.wait_ns
            if waited is not None:
                f.vcpu_wait.add_metric([domain, str(vcpu.index)], waited * NS)
        for key, state in MEMORY_STATES.items():
            kib = s.balloon_kib.get(key)
            if kib is not None:
                f.memory.add_metric([domain, state], kib * 1024)
        for block in s.blocks:
            for direction, size, requests, took in (
                ("read", block.read_bytes, block.read_requests, block.read_time_ns),
                ("write", block.write_bytes, block.write_requests, block.write_time_ns),
            ):
                labels = [domain, block.name, direction]
                if size is not None:
                    f.block_bytes.add_metric(labels, size)
                if requests is not None:
                    f.block_requests.add_metric(labels, requests)
                if took is not None:
                    f.block_time.add_metric(labels, took * NS)
        for net in s.nets:
            for direction, size, packets, errors, drops in (
                ("receive", net.rx_bytes, net.rx_packets, net.rx_errors, net.rx_drops),
                ("transmit", net.tx_bytes, net.tx_packets, net.tx_errors, net.tx_drops),
            ):
                labels = [domain, net.name, direction]
                for family, value in ((f.net_bytes, size), (f.net_packets, packets), (f.net_errors, errors),
                                      (f.net_drops, drops)):
                    if value is not None:
                        family.add_metric(labels, value)
        if s.xml is not None:
            for address in s.xml.hostdev_pci:
                if address in host.gpus:
                    f.assigned.add_metric([address, domain, namespace, name], 1.0)
        self._add_placement(f, s, host, vcpu_count)

    def _add_placement(self, f: _Families, s: DomainSample, host: _HostView, vcpu_count: int | None) -> None:
        domain = s.name
        online = host.online
        placement = self._placement.read(s) if self._placement is not None else None
        hugepages = s.xml.hugepages if s.xml is not None else None
        if placement is not None and placement.memory is not None and placement.memory.hugepage_bytes > 0:
            hugepages = True
        if hugepages is not None:
            f.hugepages.add_metric([domain], 1.0 if hugepages else 0.0)
        if vcpu_count is None:
            return
        pinned = pinned_vcpus(vcpu_count, s.xml, online)
        if pinned is not None:
            f.pinned.add_metric([domain], pinned)
        if placement is None or placement.memory is None:
            return
        for node, size in placement.memory.node_bytes.items():
            f.numa_memory.add_metric([domain, numa_label(node)], size)
        allowed = vcpu_allowed_cpus(vcpu_count, s.xml, placement.threads, online)
        nodes = numa_nodes_of((c for cpus in allowed.values() for c in cpus), host.inventory.numa)
        aligned = numa_aligned(placement.memory, nodes, max_remote_ratio=self._max_remote_ratio)
        if aligned is not None:
            f.numa_aligned.add_metric([domain], 1.0 if aligned else 0.0)
