"""VM series from libvirt: one bulk stats call per libvirt daemon per scrape, plus NUMA placement.

Also exports ``nodeagent_gpu_assigned``: a GPU passed through to a VM is a ``<hostdev>`` in the
domain's XML, and libvirt is the only place that says which VM holds it.

Series of a domain that disappeared simply stop (Prometheus marks them stale); a domain that
appears is reported from its first scrape. Counters are libvirt's own (they reset when the
domain restarts, which Prometheus' ``rate`` handles).

Every per-VM series carries ``domain`` and, so that it joins KubeVirt's ``kubevirt_vmi_*`` series,
``namespace`` and ``name``: virt-launcher names its domain ``<namespace>_<name>`` (KubeVirt's
``VMINamespaceKeyFunc``) and marks it with its ``<kubevirt xmlns="http://kubevirt.io">`` metadata
(which carries the VMI's uid, not its name); other domains have ``namespace=""`` and ``name`` = the
domain name. ``vm_metrics="complement"`` leaves out, for KubeVirt's domains only, the series
virt-handler already exports (:data:`KUBEVIRT_OVERLAP`).

A dense node reports tens of thousands of VM series per scrape, so this collector does not build
prometheus_client families: it reads the few stats it exports straight from each libvirt record
(a QEMU record carries ~50 KVM statistics per vCPU that are never exported) and appends finished
exposition lines to :class:`~nodeagent.metrics.exposition.TextFamily` objects. Everything before
the value (``name{domain="…",…} ``) is built once per domain and series and cached until the
domain goes away, so a scrape formats only numbers. The lines of all domains are written at the
end of the scrape, family by family, each family's text one join of the values with the cached
text around them (:class:`_ScrapeText`, kept while the domains and their record shapes stay).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import call, itemgetter
from typing import Any

from nodeagent.inventory import Inventory
from nodeagent.metrics.base import InventoryProvider
from nodeagent.metrics.exposition import TextFamily, escape_label_value
from nodeagent.metrics.label_values import numa_label, pci_bus_id
from nodeagent.metrics.placement import (
    DEFAULT_MAX_REMOTE_RATIO,
    PlacementReader,
    numa_aligned,
    numa_nodes_of,
    pinned_vcpus,
    vcpu_allowed_cpus,
)
from nodeagent.sources import SourceUnavailableError
from nodeagent.sources.libvirt_source import (
    STATE_NAMES,
    DomainSample,
    DomainXml,
    LibvirtSource,
    block_prefixes,
    net_prefixes,
    stat_int,
)

log = logging.getLogger(__name__)

NS_PER_SECOND = 10**9

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

# (record key suffix, direction) of the block and network counters, in exposition order
BLOCK_STATS = (("rd.bytes", "rd.reqs", "rd.times", "read"), ("wr.bytes", "wr.reqs", "wr.times", "write"))
NET_STATS = (("rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "receive"),
             ("tx.bytes", "tx.pkts", "tx.errs", "tx.drop", "transmit"))


VM_METRICS_MODES = ("full", "complement")

# Families virt-handler exports for every VMI too (kubevirt_vmi_*): left out for KubeVirt's domains
# with vm_metrics="complement". What only nodeagent has stays: info, state, vcpus, NUMA placement
# and alignment, hugepage backing, pinning, GPU assignment.
KUBEVIRT_OVERLAP = {
    "cpu": "kubevirt_vmi_cpu_usage_seconds_total",
    "vcpu_time": "kubevirt_vmi_vcpu_seconds_total",
    "vcpu_wait": "kubevirt_vmi_vcpu_delay_seconds_total (and kubevirt_vmi_vcpu_wait_seconds_total)",
    "memory": "kubevirt_vmi_memory_{actual_balloon,available,usable,unused,cached,resident}_bytes, "
              "kubevirt_vmi_memory_domain_bytes",
    "block_bytes": "kubevirt_vmi_storage_{read,write}_traffic_bytes_total",
    "block_requests": "kubevirt_vmi_storage_iops_{read,write}_total",
    "block_time": "kubevirt_vmi_storage_{read,write}_times_seconds_total",
    "net_bytes": "kubevirt_vmi_network_{receive,transmit}_bytes_total",
    "net_packets": "kubevirt_vmi_network_{receive,transmit}_packets_total",
    "net_errors": "kubevirt_vmi_network_{receive,transmit}_errors_total",
    "net_drops": "kubevirt_vmi_network_{receive,transmit}_packets_dropped_total",
}


class VmCollectorError(SourceUnavailableError):
    """Every libvirt daemon that should have answered failed."""


# key → (name, help, type), in exposition order
FAMILIES: dict[str, tuple[str, str, str]] = {
    "info": ("nodeagent_vm_info", "A running VM (libvirt domain); KubeVirt names split.", "gauge"),
    "state": ("nodeagent_vm_state", "The domain's libvirt state (running, paused, blocked, crashed, …), "
              "as the label of a single series.", "gauge"),
    "vcpus": ("nodeagent_vm_vcpus", "vCPUs the domain currently has.", "gauge"),
    "cpu": ("nodeagent_vm_cpu_seconds", "CPU time the domain's QEMU process used.", "counter"),
    "vcpu_time": ("nodeagent_vm_vcpu_seconds", "CPU time each vCPU ran.", "counter"),
    "vcpu_wait": ("nodeagent_vm_vcpu_wait_seconds",
                  "Time each vCPU was runnable but waited for a host CPU (the guest's steal time).", "counter"),
    "memory": ("nodeagent_vm_memory_bytes", "Domain memory by state (balloon actual/maximum, guest-reported "
               "available/usable/unused/disk_caches, host rss).", "gauge"),
    "block_bytes": ("nodeagent_vm_block_bytes", "Bytes the VM read from / wrote to a disk.", "counter"),
    "block_requests": ("nodeagent_vm_block_requests", "Disk requests of the VM.", "counter"),
    "block_time": ("nodeagent_vm_block_time_seconds",
                   "Time spent on the VM's disk requests (divide by requests for latency).", "counter"),
    "net_bytes": ("nodeagent_vm_network_bytes", "Bytes through a VM network interface.", "counter"),
    "net_packets": ("nodeagent_vm_network_packets", "Packets through a VM interface.", "counter"),
    "net_errors": ("nodeagent_vm_network_errors", "Errors on a VM network interface.", "counter"),
    "net_drops": ("nodeagent_vm_network_drops", "Packets dropped on a VM interface.", "counter"),
    "numa_memory": ("nodeagent_vm_numa_memory_bytes", "Resident guest memory of the VM's QEMU process on each "
                    "NUMA node (/proc/<pid>/numa_maps: anonymous, memfd and hugetlbfs mappings).", "gauge"),
    "numa_aligned": ("nodeagent_vm_numa_aligned", "1 when the VM's memory is on the NUMA nodes of the CPUs its "
                     "vCPUs may run on (at most {ratio} elsewhere).", "gauge"),
    "hugepages": ("nodeagent_vm_hugepages_backed", "1 when the VM's RAM is backed by hugepages.", "gauge"),
    "pinned": ("nodeagent_vm_vcpus_pinned",
               "vCPUs the domain XML pins to a subset of the host's CPUs (vcpupin / cpuset).", "gauge"),
    "assigned": ("nodeagent_gpu_assigned", "1 for each GPU passed through to a running VM.", "gauge"),
    "source_up": ("nodeagent_libvirt_up", "1 when the libvirt daemon answered this scrape's stats call.", "gauge"),
}


_OUT = {key: index for index, key in enumerate(FAMILIES)}  # family key → position in a scrape's line lists
_INFO, _STATE, _VCPUS = _OUT["info"], _OUT["state"], _OUT["vcpus"]
_HUGEPAGES, _PINNED, _ASSIGNED = _OUT["hugepages"], _OUT["pinned"], _OUT["assigned"]
_NUMA_MEMORY, _NUMA_ALIGNED = _OUT["numa_memory"], _OUT["numa_aligned"]
_INT, _SECONDS, _KIB = 0, 1, 2
_INT_ONLY = frozenset({int})  # how a plan entry's value is written: as is, ns → s, KiB → bytes


def _shape(raw: dict[str, Any]) -> tuple[Any, ...]:
    """What decides a record's plan: its vCPU count and its disks' and interfaces' names (in order)."""
    get = raw.get
    shape: list[Any] = [get("vcpu.maximum"), get("vcpu.current")]
    for i in range(stat_int(raw, "block.count") or 0):
        shape += (get(f"block.{i}.name"), get(f"block.{i}.backingIndex"))
    shape.append(None)
    for i in range(stat_int(raw, "net.count") or 0):
        shape.append(get(f"net.{i}.name"))
    return tuple(shape)


def _shape_keys(raw: dict[str, Any]) -> tuple[str, ...]:
    """The keys :func:`_shape` reads (the counts included): while a record holds all of them with
    the values they had, its shape is unchanged; one ``itemgetter`` call tells."""
    keys = ["vcpu.maximum", "vcpu.current", "block.count", "net.count"]
    for i in range(stat_int(raw, "block.count") or 0):
        keys += (f"block.{i}.name", f"block.{i}.backingIndex")
    keys += (f"net.{i}.name" for i in range(stat_int(raw, "net.count") or 0))
    return tuple(keys)


def _series_name(key: str) -> str:
    name, _, typ = FAMILIES[key]
    return name + "_total" if typ == "counter" else name


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())


def _number(value: Any) -> int | None:
    if type(value) is int:
        return value
    if value is None or isinstance(value, bool) or not isinstance(value, float):
        return None
    return int(value)


_PART = "\0"  # between two families' text in one domain's formatted block (no label value holds a NUL)


class _Batch:
    """A domain's plan as one ``itemgetter`` over the record and one ``%`` format for all its lines.

    Built for the keys the record has (a vCPU's ``delay``, else its ``wait``); a record that lacks
    one of them raises KeyError and is written entry by entry instead, as is any record holding a
    value that is not an int. ``groups`` is the plan as (family index, [(kind, series prefix)]) in
    the getter's order: :class:`_ScrapeText` writes all of a scrape's domains at once from it. Only
    when a scrape goes domain by domain is :meth:`write` used, with a template built on first use
    that holds every family's lines, the families' parts joined by a NUL, so one format and one
    split give each family its text. Seconds are written by :func:`_seconds_text`.
    """

    def __init__(self, getter: Callable[[dict[str, Any]], Any], seconds: list[int], kib: list[int], *,
                 groups: list[tuple[int, list[tuple[int, str]]]]) -> None:
        self.getter = getter
        self.seconds = seconds  # positions of the getter's values written in seconds (from ns)
        self.kib = kib  # positions written in bytes (from KiB)
        self.groups = groups  # (family index, [(kind, prefix)]) in the getter's order
        self._template: str | None = None

    @classmethod
    def of(cls, plan: list[tuple[int, str, str, str, int]], raw: dict[str, Any]) -> _Batch | None:
        grouped: dict[int, list[tuple[int, str, str]]] = {}
        for kind, key, fallback, prefix, out in plan:
            chosen = key if key in raw else fallback if fallback and fallback in raw else None
            if chosen is not None:
                grouped.setdefault(out, []).append((kind, chosen, prefix))
        keys: list[str] = []
        seconds: list[int] = []
        kib: list[int] = []
        for group in grouped.values():
            for kind, key, prefix in group:
                if _PART in prefix:
                    return None
                if kind == _SECONDS:
                    seconds.append(len(keys))
                elif kind == _KIB:
                    kib.append(len(keys))
                keys.append(key)
        if len(keys) < 2:
            return None
        groups = [(out, [(kind, prefix) for kind, _, prefix in group]) for out, group in grouped.items()]
        return cls(itemgetter(*keys), seconds, kib, groups=groups)

    def _format(self) -> str:
        if self._template is None:
            self._template = _PART.join("".join(prefix.replace("%", "%%") + "%s\n" for _, prefix in group)
                                        for _, group in self.groups)
        return self._template

    def write(self, raw: dict[str, Any], outs: list[list[str]]) -> bool:
        """Append the record's lines; False when it does not fit (nothing written then)."""
        try:
            values = self.getter(raw)
        except KeyError:
            return False
        if not _INT_ONLY.issuperset(map(type, values)):
            return False
        values = list(values)
        # as _seconds_text writes them; as text already: "%s" of a str is a copy
        for i, text in zip(self.seconds, _seconds_text([values[i] for i in self.seconds]), strict=True):
            values[i] = text
        for i in self.kib:
            values[i] *= 1024
        for (out, _), text in zip(self.groups, (self._format() % tuple(values)).split(_PART), strict=True):
            outs[out].append(text)
        return True


class _Pending:
    """The domains of a scrape whose batched lines wait for its end, in order: each one's text
    cache (holding its batch) and record. Two flat lists, so waiting allocates nothing per domain."""

    def __init__(self) -> None:
        self.texts: list[_DomainText] = []
        self.raws: list[dict[str, Any]] = []

    def add(self, text: _DomainText, raw: dict[str, Any]) -> None:
        """A domain whose ``text.batch`` fits ``raw`` (just returned by ``batch_for``)."""
        self.texts.append(text)
        self.raws.append(raw)

    def batches(self) -> tuple[_Batch, ...]:
        return tuple([text.batch for text in self.texts if text.batch is not None])  # none is None: see add

    def __len__(self) -> int:
        return len(self.raws)


def _seconds_text(nanoseconds: Sequence[int]) -> list[str]:
    """Nanoseconds (ints) as the exact decimal number of seconds: ``1.5``, ``0.000000001``, and whole
    seconds as integers (``0``, ``3``).

    Exactly what libvirt counted, which the Prometheus parser then rounds once to the nearest float
    (what ``ns / 1e9`` gives, and what Go's exporters write). It is also cheaper than a float's
    ``repr``, whose shortest-digits search (dtoa) was a quarter of a dense node's VM scrape: 18%
    fewer instructions on the bench's values, a third fewer on a mix with zeros and whole seconds
    (callgrind, bench/metrics/instructions.py).
    """
    if min(nanoseconds, default=0) < 0:  # not from libvirt (its counters are unsigned): the sign apart
        return [f"-{_seconds_text([-ns])[0]}" if ns < 0 else _seconds_text([ns])[0] for ns in nanoseconds]
    return [f"{whole}.{part:09d}".rstrip("0") if part else str(whole)
            for whole, part in map(divmod, nanoseconds, repeat(NS_PER_SECOND))]


def _picker(indexes: list[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``itemgetter(*indexes)`` that always returns a tuple (itemgetter of one index does not)."""
    if len(indexes) == 1:
        index = indexes[0]
        return lambda values: (values[index],)
    if not indexes:
        return lambda _values: ()
    return itemgetter(*indexes)


class _ScrapeText:
    """The batched lines of every domain of a scrape, written family by family in one pass.

    Built for a sequence of :class:`_Batch` (one per domain, in scrape order) and kept while the
    next scrape has the very same sequence (same domains, same record shapes). A scrape then
    costs one ``itemgetter`` call per domain to read its values, one pass over all values to check
    they are ints and to convert the seconds and KiB ones, and per family one ``itemgetter`` that
    puts the values in exposition order and one join with the domains' cached text around them.
    The text is exactly what :meth:`_Batch.write` appends domain by domain.
    """

    def __init__(self, batches: Sequence[_Batch]) -> None:
        self.getters = [batch.getter for batch in batches]
        entries: dict[int, list[tuple[int, int, str]]] = {}  # family index → [(kind, value index, prefix)]
        size = 0
        for batch in batches:
            for out, group in batch.groups:
                found = entries.setdefault(out, [])
                for kind, prefix in group:
                    found.append((kind, size, prefix))
                    size += 1
        self.size = size
        flat = [entry for out in entries.values() for entry in out]
        seconds = [index for kind, index, _ in flat if kind == _SECONDS]
        kib = [index for kind, index, _ in flat if kind == _KIB]
        self.seconds, self.kib = _picker(seconds), _picker(kib)
        # where each value sits in ``values + seconds text + bytes`` (see write)
        position = {index: size + rank for rank, index in enumerate(seconds)}
        position.update({index: size + len(seconds) + rank for rank, index in enumerate(kib)})
        self.families: list[tuple[int, list[str], Callable[[Sequence[Any]], tuple[Any, ...]]]] = []
        for out, found in entries.items():
            # prefix, value, "\n", next prefix, …: the values every third place, the prefixes the
            # domains' own strings (no copy of the text is kept here)
            pieces: list[str] = []
            for _, _, prefix in found:
                pieces += (prefix, "", "\n")
            self.families.append((out, pieces, _picker([position.get(index, index) for _, index, _ in found])))

    def write(self, raws: list[dict[str, Any]], outs: list[list[str]]) -> bool:
        """Append every family's lines for these records (in the order of the batches this was
        built for); False when a record does not fit (nothing written then)."""
        try:
            values = list(chain.from_iterable(map(call, self.getters, raws)))
        except KeyError:
            return False
        if len(values) != self.size or not _INT_ONLY.issuperset(map(type, values)):
            return False
        values += _seconds_text(self.seconds(values))
        values += [kib * 1024 for kib in self.kib(values)]
        for out, pieces, pick in self.families:
            text = pieces.copy()
            text[1::3] = map(str, pick(values))
            outs[out].append("".join(text))
        return True


class _DomainText:
    """Everything before the value of one domain's series, built on first use and kept."""

    def __init__(self, domain: str, namespace: str, name: str, uuid: str) -> None:
        self.domain = _labels(domain=domain, namespace=namespace, name=name)
        self.info = f"nodeagent_vm_info{{{_labels(domain=domain, namespace=namespace, name=name, uuid=uuid)}}} 1\n"
        self.namespace, self.name = namespace, name
        self.vcpus = f"nodeagent_vm_vcpus{{{self.domain}}} "
        self.states: dict[int | None, str] = {}
        self.vcpu_lines: dict[int, str] = {}
        self.plan: list[tuple[int, str, str, str, int]] = []
        self.plan_shape: tuple[Any, ...] | None = None
        self.batch: _Batch | None = None  # the plan as one lookup and one format per family (see _Batch)
        self.batch_shape: tuple[Any, ...] | None = None
        self.shape_probe: tuple[Callable[[dict[str, Any]], Any], tuple[Any, int]] | None = None
        self.per_domain: dict[str, str] = {}
        self.hugepages_lines: dict[bool, str] = {}
        self.pinned: tuple[DomainXml | None, int, list[int], str] | None = None  # (xml, vcpus, online, line)

    def vcpus_line(self, count: int) -> str:
        line = self.vcpu_lines.get(count)
        if line is None:
            line = self.vcpu_lines[count] = f"{self.vcpus}{count}\n"
        return line

    def state(self, state: int) -> str:
        line = self.states.get(state)
        if line is None:
            label = escape_label_value(STATE_NAMES.get(state, "unknown"))
            line = self.states[state] = f'nodeagent_vm_state{{{self.domain},state="{label}"}} 1\n'
        return line

    def plan_for(self, raw: dict[str, Any]) -> list[tuple[int, str, str, str, int]]:
        """What to read from a record and where to write it: (kind, key, fallback key, series prefix,
        family index), in exposition order. Rebuilt only when the record's shape (vCPUs, disks,
        interfaces) changes; every key is still looked up, so a stat missing in one scrape is skipped."""
        shape = _shape(raw)
        if shape != self.plan_shape:
            self.plan = self._build_plan(raw)
            self.plan_shape = shape
        return self.plan

    def batch_for(self, raw: dict[str, Any]) -> _Batch | None:
        """The plan for this record's exact key set (None: no batch fits; use the plan entry by entry)."""
        probe = self.shape_probe
        if probe is not None:
            try:
                if (probe[0](raw), len(raw)) == probe[1]:  # the shape's keys, same values, same key count
                    return self.batch
            except KeyError:
                pass
        shape = (_shape(raw), len(raw))  # a key that appears (a guest balloon driver starting) changes len
        if shape != self.batch_shape:
            self.batch = _Batch.of(self.plan_for(raw), raw)
            self.batch_shape = shape
        keys = _shape_keys(raw)
        getter = itemgetter(*keys)
        try:
            self.shape_probe = (getter, (getter(raw), len(raw)))
        except KeyError:  # a record without one of them (no vcpu.maximum): _shape each time
            self.shape_probe = None
        return self.batch

    def _build_plan(self, raw: dict[str, Any]) -> list[tuple[int, str, str, str, int]]:
        d = self.domain
        plan = [(_SECONDS, "cpu.time", "", f"nodeagent_vm_cpu_seconds_total{{{d}}} ", _OUT["cpu"])]
        for i in range(stat_int(raw, "vcpu.maximum") or stat_int(raw, "vcpu.current") or 0):
            labels = f'{d},vcpu="{i}"'
            plan.append((_SECONDS, f"vcpu.{i}.time", "", f"nodeagent_vm_vcpu_seconds_total{{{labels}}} ",
                         _OUT["vcpu_time"]))
            # delay (schedstat run_delay) is what the guest sees as steal; wait (sched wait_sum) is the
            # same quantity from schedstats, reported by libvirt versions before delay existed.
            plan.append((_SECONDS, f"vcpu.{i}.delay", f"vcpu.{i}.wait",
                         f"nodeagent_vm_vcpu_wait_seconds_total{{{labels}}} ", _OUT["vcpu_wait"]))
        for key, state in MEMORY_STATES.items():
            plan.append((_KIB, "balloon." + key, "", f'nodeagent_vm_memory_bytes{{{d},state="{state}"}} ',
                         _OUT["memory"]))
        for device, prefix in block_prefixes(raw):
            for size, requests, took, direction in BLOCK_STATS:
                labels = f"{d},{_labels(device=device, direction=direction)}"
                plan += [(_INT, prefix + size, "", f"nodeagent_vm_block_bytes_total{{{labels}}} ",
                          _OUT["block_bytes"]),
                         (_INT, prefix + requests, "", f"nodeagent_vm_block_requests_total{{{labels}}} ",
                          _OUT["block_requests"]),
                         (_SECONDS, prefix + took, "", f"nodeagent_vm_block_time_seconds_total{{{labels}}} ",
                          _OUT["block_time"])]
        for interface, prefix in net_prefixes(raw):
            for size, packets, errors, drops, direction in NET_STATS:
                labels = f"{d},{_labels(interface=interface, direction=direction)}"
                plan += [(_INT, prefix + key, "", f"{family}{{{labels}}} ", _OUT[out]) for key, family, out in (
                    (size, "nodeagent_vm_network_bytes_total", "net_bytes"),
                    (packets, "nodeagent_vm_network_packets_total", "net_packets"),
                    (errors, "nodeagent_vm_network_errors_total", "net_errors"),
                    (drops, "nodeagent_vm_network_drops_total", "net_drops"))]
        return plan

    def hugepages_line(self, hugepages: bool) -> str:
        line = self.hugepages_lines[hugepages] = f"{self.series('hugepages')}{1 if hugepages else 0}\n"
        return line

    def assigned(self, address: str) -> str:
        line = self.per_domain.get("assigned\0" + address)
        if line is None:
            labels = _labels(pci_address=address, pci_bus_id=pci_bus_id(address)) + "," + self.domain
            line = self.per_domain["assigned\0" + address] = f"nodeagent_gpu_assigned{{{labels}}} 1\n"
        return line

    def series(self, key: str, **extra: str) -> str:
        """``name{domain="…"[,extra]} `` of a per-domain series (placement, hugepages, GPUs)."""
        cache_key = key + "".join(f"\0{k}={v}" for k, v in extra.items()) if extra else key
        found = self.per_domain.get(cache_key)
        if found is None:
            labels = self.domain + ("," + _labels(**extra) if extra else "")
            found = self.per_domain[cache_key] = f"{_series_name(key)}{{{labels}}} "
        return found


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
                 max_remote_ratio: float = DEFAULT_MAX_REMOTE_RATIO, vm_metrics: str = "full") -> None:
        if vm_metrics not in VM_METRICS_MODES:
            raise ValueError(f"vm_metrics: {vm_metrics!r} is not one of {', '.join(VM_METRICS_MODES)}")
        self._complement = vm_metrics == "complement"
        self._sources = sources
        self._inventory = inventory
        self._placement = placement
        self._max_remote_ratio = max_remote_ratio
        self._texts: dict[tuple[str, str, bool], _DomainText] = {}
        self._scrape_text: tuple[tuple[_Batch, ...], _ScrapeText] | None = None  # for the last scrape's batches
        self._lock = threading.Lock()  # the text caches; two overlapping scrapes take turns
        self._host_view: tuple[Inventory, _HostView] | None = None

    def _families(self) -> dict[str, TextFamily]:
        ratio = f"{self._max_remote_ratio:.0%}"
        families = {}
        for key, (name, documentation, typ) in FAMILIES.items():
            families[key] = TextFamily(name, documentation.format(ratio=ratio) if "{" in documentation
                                       else documentation, typ)
        return families

    def _view(self, inv: Inventory) -> _HostView:
        cached = self._host_view
        if cached is not None and cached[0] is inv:
            return cached[1]
        view = _HostView.of(inv)
        self._host_view = (inv, view)
        return view

    def collect(self) -> Iterator[TextFamily]:
        host = self._view(self._inventory())
        families = self._families()
        source_up = families["source_up"].lines
        lines = [family.lines for family in families.values()]
        attempted, failures = 0, []
        seen_names: set[str] = set()
        seen_uuids: set[str] = set()
        with self._lock:
            previous, current = self._texts, {}
            # batched lines wait here and are written together at the end (see _ScrapeText); None
            # once a domain had to be written entry by entry: the rest of the scrape goes domain by domain
            pending: _Pending | None = _Pending()
            for source in self._sources():
                if not source.present():
                    continue
                attempted += 1
                label = escape_label_value(source.name)
                try:
                    samples = source.domains()
                except SourceUnavailableError as exc:
                    failures.append(str(exc))
                    source_up.append(f'nodeagent_libvirt_up{{source="{label}"}} 0\n')
                    continue
                source_up.append(f'nodeagent_libvirt_up{{source="{label}"}} 1\n')
                for sample in samples:
                    domain, uuid = sample.name, sample.uuid
                    if domain in seen_names:
                        log.warning("domain %s reported by more than one libvirt daemon; keeping the first", domain)
                        continue
                    seen_names.add(domain)
                    seen_uuids.add(uuid)
                    key = (uuid, domain, sample.is_kubevirt)  # what namespace and name derive from
                    text = previous.get(key)
                    if text is None:
                        namespace, name = sample.namespace_name
                        text = _DomainText(domain, namespace, name, uuid)
                    current[key] = text
                    pending = self._add_domain(lines, text, sample, host, pending)
            if pending:
                self._write_pending(pending, lines)
            self._texts = current
        if self._placement is not None:
            self._placement.forget(seen_uuids)
        if attempted and len(failures) == attempted:
            raise VmCollectorError("; ".join(failures))
        yield from families.values()

    def _add_domain(self, lines: list[list[str]], t: _DomainText, s: DomainSample, host: _HostView,
                    pending: _Pending | None) -> _Pending | None:
        """Write the domain's lines; its batched ones are added to ``pending`` when that is not None.
        Returns what ``pending`` is for the next domain."""
        raw = s.raw
        lines[_INFO].append(t.info)
        state = raw.get("state.state")
        if type(state) is not int:
            state = stat_int(raw, "state.state")
        if state is not None:  # one series per VM: its current state
            lines[_STATE].append(t.states.get(state) or t.state(state))
        vcpu_count = raw.get("vcpu.current")
        if type(vcpu_count) is not int:
            vcpu_count = stat_int(raw, "vcpu.current")
            if vcpu_count is None and s.xml is not None:
                vcpu_count = s.xml.vcpus
        if vcpu_count is not None:
            lines[_VCPUS].append(t.vcpu_lines.get(vcpu_count) or t.vcpus_line(vcpu_count))
        if not (self._complement and s.is_kubevirt):  # else virt-handler exports these
            batch = t.batch_for(raw)
            if batch is not None and pending is not None:
                pending.add(t, raw)
            else:
                if pending:  # the domains before this one first, in their order
                    self._write_domains(pending, lines)
                pending = None
                if batch is None or not batch.write(raw, lines):
                    self._write_entries(t.plan_for(raw), raw, lines)
        xml = s.xml
        if xml is not None and xml.hostdev_pci:
            for address in xml.hostdev_pci:
                if address in host.gpus:
                    lines[_ASSIGNED].append(t.assigned(address))
        self._add_placement(lines, t, s, host, vcpu_count)
        return pending

    def _write_pending(self, pending: _Pending, lines: list[list[str]]) -> None:
        """A scrape's batched lines, all domains at once (called with the lock held)."""
        batches = pending.batches()
        cached = self._scrape_text
        if cached is None or cached[0] != batches:
            cached = self._scrape_text = (batches, _ScrapeText(batches))
        if not cached[1].write(pending.raws, lines):  # a record that does not fit: domain by domain
            self._write_domains(pending, lines)

    @staticmethod
    def _write_domains(pending: _Pending, lines: list[list[str]]) -> None:
        for text, raw in zip(pending.texts, pending.raws, strict=True):
            batch = text.batch
            if batch is None or not batch.write(raw, lines):
                VmCollector._write_entries(text.plan_for(raw), raw, lines)

    @staticmethod
    def _write_entries(plan: list[tuple[int, str, str, str, int]], raw: dict[str, Any], outs: list[list[str]]) -> None:
        """The plan entry by entry: any record, whatever keys and value types it has."""
        get = raw.get
        for kind, key, fallback, prefix, out in plan:
            value = get(key)
            if type(value) is not int:  # libvirt's numbers are ints: anything else is the slow path
                value = _number(value)
                if value is None and fallback:
                    value = _number(get(fallback))
                if value is None:
                    continue
            if kind == _SECONDS:
                outs[out].append(f"{prefix}{_seconds_text([value])[0]}\n")
            elif kind == _KIB:
                outs[out].append(f"{prefix}{value * 1024}\n")
            else:
                outs[out].append(f"{prefix}{value}\n")

    def _add_placement(self, lines: list[list[str]], t: _DomainText, s: DomainSample, host: _HostView,
                       vcpu_count: int | None) -> None:
        online = host.online
        placement = self._placement.read(s) if self._placement is not None else None
        xml = s.xml
        hugepages = xml.hugepages if xml is not None else None
        if placement is not None and placement.memory is not None and placement.memory.hugepage_bytes > 0:
            hugepages = True
        if hugepages is not None:
            lines[_HUGEPAGES].append(t.hugepages_lines.get(hugepages) or t.hugepages_line(hugepages))
        if vcpu_count is None:
            return
        cached = t.pinned
        if cached is not None and cached[0] is xml and cached[1] == vcpu_count and cached[2] is online:
            line: str | None = cached[3]
        else:
            pinned = pinned_vcpus(vcpu_count, xml, online)
            line = None if pinned is None else f"{t.series('pinned')}{pinned}\n"
            t.pinned = (xml, vcpu_count, online, line or "")
        if line:
            lines[_PINNED].append(line)
        if placement is None or placement.memory is None:
            return
        for node, size in placement.memory.node_bytes.items():
            lines[_NUMA_MEMORY].append(f"{t.series('numa_memory', numa_node=numa_label(node))}{size}\n")
        allowed = vcpu_allowed_cpus(vcpu_count, xml, placement.threads, online)
        nodes = numa_nodes_of((c for cpus in allowed.values() for c in cpus), host.inventory.numa)
        aligned = numa_aligned(placement.memory, nodes, max_remote_ratio=self._max_remote_ratio)
        if aligned is not None:
            lines[_NUMA_ALIGNED].append(f"{t.series('numa_aligned')}{1 if aligned else 0}\n")

