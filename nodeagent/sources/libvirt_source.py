"""libvirt, as plain data: one bulk ``getAllDomainStats`` call per read, on a reused connection.

* **One call per read.** :meth:`LibvirtSource.domains` asks libvirt for the stats of every active
  domain in a single ``virConnectGetAllDomainStats`` call (with ``NOWAIT``, so a domain whose
  QEMU monitor is busy with a long job is reported without the stats that need the monitor
  instead of stalling the scrape).
* **Domain XML** (vCPU pinning, hugepage backing, ``<hostdev>`` GPUs, KubeVirt metadata) changes
  rarely, so it is fetched per domain only when the domain is new, restarted (its id changed), or
  its cached copy is older than ``xml_ttl_s`` (with jitter, so a host full of domains does not
  re-fetch them all in the same scrape).
* **Reconnect.** The connection is opened read-only on first use and kept. When a call fails and
  the connection is no longer alive (libvirtd restarted, socket closed), it is re-opened and the
  call retried once, inside the same read.
* **KubeVirt.** Each virt-launcher pod runs its own libvirt daemon whose socket lives in the pod's
  ``libvirt-runtime`` emptyDir; :func:`kubevirt_sockets` finds them and :class:`LibvirtPool`
  keeps one source per socket next to the configured URIs.

``libvirt`` (libvirt-python) is imported on first use; without it every read raises
:class:`~nodeagent.sources.SourceUnavailableError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import Any

from nodeagent.host import Host
from nodeagent.parse import parse_cpulist
from nodeagent.sources import SourceUnavailableError

log = logging.getLogger(__name__)

KUBEVIRT_XMLNS = "http://kubevirt.io"

STATE_NAMES = {
    0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff", 6: "crashed",
    7: "pmsuspended",
}

_K8S_NAMESPACE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_K8S_NAME = r"[a-z0-9]([-.a-z0-9]*[a-z0-9])?"
_KUBEVIRT_NAME = re.compile(rf"^(?P<namespace>{_K8S_NAMESPACE})_(?P<name>{_K8S_NAME})$")

# balloon.* fields (KiB, except the fault and swap counters) read from a stats record. Looked up by
# name: a record holds well over a hundred keys (every KVM vCPU statistic) and scanning them all
# for the balloon prefix would cost more than the rest of the parse.
BALLOON_FIELDS = ("current", "maximum", "available", "usable", "unused", "disk_caches", "rss", "swap_in",
                  "swap_out", "major_fault", "minor_fault", "last-update")

# --- plain data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VcpuStat:
    index: int
    state: int | None
    time_ns: int | None
    wait_ns: int | None  # vcpu.N.wait: time runnable but waiting (schedstats; 0 when disabled)
    delay_ns: int | None  # vcpu.N.delay: run-queue delay, what the guest sees as steal time


@dataclass(frozen=True)
class BlockStat:
    name: str
    path: str | None
    read_bytes: int | None
    write_bytes: int | None
    read_requests: int | None
    write_requests: int | None
    read_time_ns: int | None
    write_time_ns: int | None


@dataclass(frozen=True)
class NetStat:
    name: str
    rx_bytes: int | None
    tx_bytes: int | None
    rx_packets: int | None
    tx_packets: int | None
    rx_errors: int | None
    tx_errors: int | None
    rx_drops: int | None
    tx_drops: int | None


@dataclass(frozen=True)
class DomainXml:
    """The facts nodeagent needs from a domain's live XML."""

    vcpus: int | None
    vcpu_cpuset: list[int] | None  # <vcpu cpuset='...'>
    vcpupins: dict[int, list[int]]  # <cputune><vcpupin vcpu='N' cpuset='...'>
    hugepages: bool  # <memoryBacking><hugepages/>
    hostdev_pci: list[str]  # PCI addresses of <hostdev type='pci'> sources, "0000:17:00.0"
    kubevirt: bool  # carries KubeVirt's <metadata><kubevirt xmlns="http://kubevirt.io">


@dataclass
class DomainSample:
    """One active domain: its getAllDomainStats record (plus its cached XML facts).

    The record is kept as libvirt returned it and parsed on demand: a QEMU record carries some
    fifty KVM statistics per vCPU that nodeagent never exports, and the VM collector encodes the
    few it does export straight from the record (see nodeagent.metrics.vm). The typed views below
    (``vcpus``, ``blocks``, ``nets``, ``balloon_kib``) are parsed on first access and kept.

    Read-only by convention, not ``frozen``: a scrape builds one per domain, and a frozen
    dataclass's ``__init__`` (six ``object.__setattr__`` calls) cost ~10,000 instructions each,
    5% of a 250-VM scrape with what its attribute reads cost after it (callgrind).
    """

    name: str
    uuid: str
    id: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)  # the getAllDomainStats record as libvirt returned it
    xml: DomainXml | None = None
    driver: str = ""  # the connection's hypervisor type: "QEMU", "Test", …

    @property
    def state(self) -> int | None:
        return stat_int(self.raw, "state.state")

    @property
    def cpu_time_ns(self) -> int | None:
        return stat_int(self.raw, "cpu.time")

    @property
    def vcpus_current(self) -> int | None:
        return stat_int(self.raw, "vcpu.current")

    @cached_property
    def vcpus(self) -> list[VcpuStat]:
        return _vcpu_stats(self.raw)

    @cached_property
    def balloon_kib(self) -> dict[str, int]:
        """libvirt's balloon.* fields (KiB), e.g. current, rss, available."""
        raw = self.raw
        return {key: value for key in BALLOON_FIELDS if (value := stat_int(raw, "balloon." + key)) is not None}

    @cached_property
    def blocks(self) -> list[BlockStat]:
        return _block_stats(self.raw)

    @cached_property
    def nets(self) -> list[NetStat]:
        return _net_stats(self.raw)

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state if self.state is not None else -1, "unknown")

    @property
    def is_kubevirt(self) -> bool:
        if self.xml is not None:
            return self.xml.kubevirt
        return _KUBEVIRT_NAME.match(self.name) is not None

    @property
    def namespace_name(self) -> tuple[str, str]:
        """KubeVirt names its domains ``<namespace>_<name>``; other domains keep their name."""
        if self.is_kubevirt:
            namespace, sep, name = self.name.partition("_")
            if sep:
                return namespace, name
        return "", self.name

    @property
    def vcpu_count(self) -> int | None:
        current = self.vcpus_current
        if current is not None:
            return current
        return self.xml.vcpus if self.xml else None


# --- parsing (pure) ------------------------------------------------------------------------


def stat_int(raw: dict[str, Any], key: str) -> int | None:
    """A record's number as an int (libvirt returns ints), None when absent or not a number."""
    value = raw.get(key)
    if type(value) is int:  # what libvirt returns for every counter: the fast path
        return value
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def vcpu_indexes(raw: dict[str, Any]) -> list[int]:
    """The vCPUs a record reports anything for (state, time, wait or delay)."""
    vcpu_max = stat_int(raw, "vcpu.maximum") or stat_int(raw, "vcpu.current") or 0
    return [i for i in range(vcpu_max)
            if f"vcpu.{i}.state" in raw or f"vcpu.{i}.time" in raw or f"vcpu.{i}.wait" in raw
            or f"vcpu.{i}.delay" in raw]


def _vcpu_stats(raw: dict[str, Any]) -> list[VcpuStat]:
    return [VcpuStat(i, stat_int(raw, f"vcpu.{i}.state"), stat_int(raw, f"vcpu.{i}.time"),
                     stat_int(raw, f"vcpu.{i}.wait"), stat_int(raw, f"vcpu.{i}.delay")) for i in vcpu_indexes(raw)]


def block_prefixes(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(disk name, key prefix) of each disk in a record; backing-chain entries left out."""
    found = []
    for i in range(stat_int(raw, "block.count") or 0):
        p = f"block.{i}."
        block_name = raw.get(p + "name")
        if not isinstance(block_name, str) or raw.get(p + "backingIndex", 0) not in (0, 1):
            # backing-chain entries (only with VIR_DOMAIN_STATS_BACKING) repeat the disk's name
            continue
        found.append((block_name, p))
    return found


def _block_stats(raw: dict[str, Any]) -> list[BlockStat]:
    blocks: list[BlockStat] = []
    for block_name, p in block_prefixes(raw):
        path = raw.get(p + "path")
        blocks.append(BlockStat(block_name, path if isinstance(path, str) else None,
                                stat_int(raw, p + "rd.bytes"), stat_int(raw, p + "wr.bytes"),
                                stat_int(raw, p + "rd.reqs"), stat_int(raw, p + "wr.reqs"),
                                stat_int(raw, p + "rd.times"), stat_int(raw, p + "wr.times")))
    return blocks


def net_prefixes(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(interface name, key prefix) of each interface in a record."""
    found = []
    for i in range(stat_int(raw, "net.count") or 0):
        p = f"net.{i}."
        net_name = raw.get(p + "name")
        if isinstance(net_name, str):
            found.append((net_name, p))
    return found


def _net_stats(raw: dict[str, Any]) -> list[NetStat]:
    return [NetStat(net_name, stat_int(raw, p + "rx.bytes"), stat_int(raw, p + "tx.bytes"),
                    stat_int(raw, p + "rx.pkts"), stat_int(raw, p + "tx.pkts"),
                    stat_int(raw, p + "rx.errs"), stat_int(raw, p + "tx.errs"),
                    stat_int(raw, p + "rx.drop"), stat_int(raw, p + "tx.drop"))
            for net_name, p in net_prefixes(raw)]


def parse_domain_stats(name: str, uuid: str, dom_id: int | None, raw: dict[str, Any], *,
                       xml: DomainXml | None = None, driver: str = "") -> DomainSample:
    """One getAllDomainStats record (``{'cpu.time': …, 'vcpu.0.wait': …}``) as a sample (parsed lazily)."""
    return DomainSample(name=name, uuid=uuid.lower(), id=dom_id, raw=raw, xml=xml, driver=driver)


def _pci_address(element: ET.Element) -> str | None:
    try:
        domain = int(element.get("domain", "0"), 16)
        bus = int(element.get("bus", ""), 16)
        slot = int(element.get("slot", ""), 16)
        function = int(element.get("function", ""), 16)
    except ValueError:
        return None
    return f"{domain:04x}:{bus:02x}:{slot:02x}.{function:x}"


def _cpuset(text: str | None) -> list[int] | None:
    """A libvirt cpuset (``0-3,^2,8``): a cpulist that may exclude CPUs with ``^``."""
    if not text:
        return None
    include: set[int] = set()
    exclude: set[int] = set()
    try:
        for raw_part in text.split(","):
            part = raw_part.strip()
            if part.startswith("^"):
                exclude.update(parse_cpulist(part[1:]))
            elif part:
                include.update(parse_cpulist(part))
    except ValueError:
        return None
    return sorted(include - exclude)


def parse_domain_xml(text: str) -> DomainXml:
    """Extract pinning, hugepage backing, PCI hostdevs and KubeVirt metadata from domain XML."""
    root = ET.fromstring(text)
    vcpu = root.find("vcpu")
    vcpus: int | None = None
    if vcpu is not None:
        count = vcpu.get("current") or (vcpu.text or "").strip()
        vcpus = int(count) if count.isdigit() else None
    pins: dict[int, list[int]] = {}
    for pin in root.findall("cputune/vcpupin"):
        index, cpus = pin.get("vcpu", ""), _cpuset(pin.get("cpuset"))
        if index.isdigit() and cpus is not None:
            pins[int(index)] = cpus
    hostdevs: list[str] = []
    for hostdev in root.findall("devices/hostdev"):
        if hostdev.get("type") != "pci":
            continue
        address = hostdev.find("source/address")
        parsed = _pci_address(address) if address is not None else None
        if parsed:
            hostdevs.append(parsed)
    metadata = root.find("metadata")
    kubevirt = metadata is not None and metadata.find(f"{{{KUBEVIRT_XMLNS}}}kubevirt") is not None
    return DomainXml(
        vcpus=vcpus,
        vcpu_cpuset=_cpuset(vcpu.get("cpuset")) if vcpu is not None else None,
        vcpupins=pins,
        hugepages=root.find("memoryBacking/hugepages") is not None,
        hostdev_pci=hostdevs,
        kubevirt=kubevirt,
    )


# --- the connection ------------------------------------------------------------------------

_libvirt_module: ModuleType | None = None
_import_lock = threading.Lock()


def _libvirt() -> ModuleType:
    """libvirt-python, imported once; its default handler (printing every error) silenced."""
    global _libvirt_module  # noqa: PLW0603 - a process-wide, lazily imported module
    with _import_lock:
        if _libvirt_module is None:
            try:
                import libvirt
            except ImportError as exc:
                raise SourceUnavailableError(
                    "libvirt-python is not installed (pip install nodeagent[libvirt])") from exc
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            _libvirt_module = libvirt
        return _libvirt_module


@dataclass
class _XmlEntry:
    dom_id: int | None
    fetched_at: float
    facts: DomainXml | None


@dataclass
class LibvirtSource:
    """One libvirt URI, one reused read-only connection. Thread-safe."""

    uri: str
    presence: Callable[[], bool] | None = None  # False: no daemon here (its socket is absent)
    xml_ttl_s: float = 60.0
    label: str | None = None  # how the source is named in metrics (default: the URI)
    alternatives: tuple[str, ...] = ()  # URIs to try when ``uri`` cannot be opened
    _conn: Any = field(default=None, repr=False)
    _xml: dict[str, _XmlEntry] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    connects: int = 0  # connections opened (the first one included)

    @property
    def name(self) -> str:
        return self.label or self.uri

    def present(self) -> bool:
        """False when the daemon's socket does not exist (nothing to connect to is not an error)."""
        return self.presence is None or self.presence()

    def domains(self) -> list[DomainSample]:
        """Every active domain, from one getAllDomainStats call. Raises SourceUnavailableError."""
        libvirt = _libvirt()
        with self._lock:
            records = self._all_stats(libvirt)
            return self._samples(libvirt, records)

    def close(self) -> None:
        with self._lock:
            self._drop()

    # internals (called with the lock held)

    def _stats_flags(self, libvirt: ModuleType) -> tuple[int, int]:
        stats = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
                 | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU
                 | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)
        flags = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | getattr(
            libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
        return stats, flags

    def _connect(self, libvirt: ModuleType) -> Any:
        if self._conn is not None:
            return self._conn
        error = ""
        for uri in (self.uri, *self.alternatives):
            try:
                self._conn = libvirt.openReadOnly(uri)
            except libvirt.libvirtError as exc:
                error = error or exc.get_error_message()
                continue
            if uri != self.uri:  # remember what worked
                self.alternatives = tuple(u for u in (self.uri, *self.alternatives) if u != uri)
                self.uri = uri
            self.connects += 1
            log.info("connected to libvirt at %s", self.name)
            return self._conn
        raise SourceUnavailableError(f"cannot connect to {self.name}: {error}")

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _all_stats(self, libvirt: ModuleType) -> list[tuple[Any, dict[str, Any]]]:
        stats, flags = self._stats_flags(libvirt)
        for attempt in (1, 2):
            conn = self._connect(libvirt)
            try:
                return list(conn.getAllDomainStats(stats, flags))
            except libvirt.libvirtError as exc:
                alive = False
                with contextlib.suppress(Exception):
                    alive = bool(conn.isAlive())
                if alive and attempt == 1 and exc.get_error_code() == libvirt.VIR_ERR_INVALID_ARG:
                    # an older daemon without NOWAIT: ask again without it
                    flags &= ~getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
                    continue
                if alive:
                    raise SourceUnavailableError(f"{self.name}: {exc.get_error_message()}") from exc
                log.warning("libvirt connection to %s lost (%s); reconnecting", self.name,
                            exc.get_error_message())
                self._drop()
                if attempt == 2:
                    raise SourceUnavailableError(f"{self.name}: {exc.get_error_message()}") from exc
        raise AssertionError("unreachable")

    def _samples(self, libvirt: ModuleType, records: list[tuple[Any, dict[str, Any]]]) -> list[DomainSample]:
        driver = ""
        with contextlib.suppress(Exception):
            driver = self._conn.getType()
        now = time.monotonic()
        samples: list[DomainSample] = []
        seen: set[str] = set()
        cached, ttl = self._xml.get, self.xml_ttl_s
        for dom, raw in records:
            uuid = dom.UUIDString().lower()
            seen.add(uuid)
            dom_id = dom.ID()
            dom_id = dom_id if isinstance(dom_id, int) and dom_id >= 0 else None
            entry = cached(uuid)  # the common case inline: the XML facts fetched lately for this run of the domain
            if entry is not None and entry.dom_id == dom_id and now < entry.fetched_at + ttl:
                facts = entry.facts
            else:
                facts = self._xml_facts(libvirt, dom, uuid, dom_id, now)
            samples.append(DomainSample(dom.name(), uuid, dom_id, raw, facts, driver))
        for gone in [u for u in self._xml if u not in seen]:
            del self._xml[gone]
        return samples

    def _xml_facts(self, libvirt: ModuleType, dom: Any, uuid: str, dom_id: int | None,
                   now: float) -> DomainXml | None:
        entry = self._xml.get(uuid)
        if entry is not None and entry.dom_id == dom_id and now < entry.fetched_at + self.xml_ttl_s:
            return entry.facts
        try:
            facts: DomainXml | None = parse_domain_xml(dom.XMLDesc(0))
        except libvirt.libvirtError as exc:  # the domain went away between the two calls
            log.debug("no XML for %s: %s", dom.name(), exc.get_error_message())
            return entry.facts if entry is not None else None
        except ET.ParseError as exc:
            log.warning("unparsable XML for domain %s: %s", dom.name(), exc)
            facts = None
        # jitter: spread re-fetches of many domains over a quarter of the TTL
        jitter = random.uniform(0, self.xml_ttl_s / 4)
        self._xml[uuid] = _XmlEntry(dom_id, now - jitter, facts)
        return facts


# --- KubeVirt virt-launcher daemons --------------------------------------------------------

KUBELET_PODS = "/var/lib/kubelet/pods"
LAUNCHER_SOCKETS = ("virtqemud-sock", "libvirt-sock")  # modular daemon (current), monolithic (older)


def kubevirt_sockets(host: Host, pods_dir: str = KUBELET_PODS) -> list[str]:
    """Host paths of the libvirt sockets of running virt-launcher pods.

    virt-launcher mounts the emptyDir ``libvirt-runtime`` at ``/var/run/libvirt``; its daemon's
    socket is therefore visible on the host below the kubelet's pod directory.
    """
    found: list[str] = []
    for pod in host.listdir(pods_dir):
        runtime = f"{pods_dir}/{pod}/volumes/kubernetes.io~empty-dir/libvirt-runtime"
        for name in LAUNCHER_SOCKETS:
            if host.exists(f"{runtime}/{name}"):
                found.append(f"{runtime}/{name}")
                break
    return found


class LibvirtPool:
    """The libvirt daemons to read: fixed URIs plus, optionally, one per virt-launcher pod."""

    def __init__(self, sources: list[LibvirtSource], *, host: Host | None = None,
                 kubevirt: bool = False, xml_ttl_s: float = 60.0, pods_dir: str = KUBELET_PODS) -> None:
        self._fixed = list(sources)
        self._host = host
        self._pods_dir = pods_dir
        self._kubevirt = kubevirt and host is not None
        self._xml_ttl_s = xml_ttl_s
        self._launchers: dict[str, LibvirtSource] = {}
        self._link_dir: str | None = None
        self._lock = threading.Lock()

    def sources(self) -> list[LibvirtSource]:
        """The sources to read now (launcher sockets re-listed on every call)."""
        if not self._kubevirt:
            return list(self._fixed)
        assert self._host is not None
        with self._lock:
            current = set(kubevirt_sockets(self._host, self._pods_dir))
            for gone in [p for p in self._launchers if p not in current]:
                self._launchers.pop(gone).close()
                self._unlink(gone)
            for path in sorted(current - set(self._launchers)):
                self._launchers[path] = self._launcher_source(path)
            return self._fixed + [self._launchers[p] for p in sorted(self._launchers)]

    def close(self) -> None:
        with self._lock:
            for source in self._fixed + list(self._launchers.values()):
                source.close()
            for path in list(self._launchers):
                self._unlink(path)
            self._launchers.clear()
            if self._link_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(self._link_dir)
                self._link_dir = None

    def _short_link(self, host_path: str) -> str:
        """A short symlink to a socket: a pod's socket path is longer than sun_path's 108 bytes."""
        assert self._host is not None
        if self._link_dir is None:
            self._link_dir = tempfile.mkdtemp(prefix="nodeagent-lv-")
        link = os.path.join(self._link_dir, hashlib.sha1(host_path.encode()).hexdigest()[:12])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(self._host.fs_path(host_path), link)
        return link

    def _unlink(self, host_path: str) -> None:
        if self._link_dir:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._link_dir, hashlib.sha1(host_path.encode()).hexdigest()[:12]))

    def _launcher_source(self, host_path: str) -> LibvirtSource:
        link = self._short_link(host_path)
        # A non-root virt-launcher's daemon serves the session driver, a root one the system
        # driver; the URI path only selects the driver on the far side of the socket.
        return LibvirtSource(f"qemu+unix:///session?socket={link}",
                             presence=lambda: os.path.exists(link), xml_ttl_s=self._xml_ttl_s,
                             label=host_path, alternatives=(f"qemu+unix:///system?socket={link}",))
