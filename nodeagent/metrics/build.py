"""The standard collector set for a node on a fresh registry (:func:`build_metrics`), and the scrape."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from nodeagent.host import Host
from nodeagent.metrics.base import InventoryProvider, NodeCollector, Supervisor
from nodeagent.metrics.capacity import CapacityCollector
from nodeagent.metrics.exposition import CONTENT_TYPE as TEXT_CONTENT_TYPE
from nodeagent.metrics.exposition import TextRenderer
from nodeagent.metrics.gpu import GpuSysfsCollector, NvmlCollector
from nodeagent.metrics.node import ChecksCollector, NodeFactsCollector, WorkloadsProvider
from nodeagent.metrics.placement import PlacementReader
from nodeagent.metrics.prom import CollectorRegistry, ProcessCollector, choose_encoder
from nodeagent.metrics.vgpu import VgpuCollector
from nodeagent.metrics.vm import VmCollector
from nodeagent.sources.libvirt_source import LibvirtPool, LibvirtSource
from nodeagent.sources.nvml_source import NvmlSource

log = logging.getLogger(__name__)

# The system daemon's sockets: read-only first (what openReadOnly uses); modular daemons after.
SYSTEM_SOCKETS = ("/run/libvirt/libvirt-sock-ro", "/run/libvirt/libvirt-sock",
                  "/run/libvirt/virtqemud-sock-ro", "/run/libvirt/virtqemud-sock")


@dataclass
class MetricsOptions:
    """Which live sources to read, and how often the slow ones are refreshed."""

    libvirt: bool = True  # read VMs through libvirt at all
    libvirt_uris: Sequence[str] | None = None  # None: the host's system daemon, when it has one
    kubevirt: bool = True  # also read every virt-launcher pod's libvirt daemon
    nvml: bool = True
    process: bool = True  # process_* series of nodeagent itself (client-library convention, unprefixed)
    live: bool | None = None  # None: live sources only when the Host's root is "/"
    xml_ttl_s: float = 60.0  # how long a domain's XML (pinning, hostdevs) is reused
    placement_refresh_s: float = 30.0  # how often /proc/<qemu>/numa_maps and vCPU affinity are re-read
    max_remote_ratio: float = 0.05  # share of a VM's memory allowed off its vCPUs' NUMA nodes
    vm_metrics: str = "full"  # complement: leave out what virt-handler exports for KubeVirt's VMs
    workloads: WorkloadsProvider | None = None  # the workload classes in force (None: the defaults)


@dataclass
class NodeMetrics:
    """The registry with nodeagent's collectors, and the live sources to close on shutdown."""

    registry: CollectorRegistry
    supervisor: Supervisor
    closers: list[object] = field(default_factory=list)
    renderer: TextRenderer = field(default_factory=TextRenderer)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """One scrape: the body and its content type.

        The Prometheus text format whenever the client accepts it (Prometheus offers it next to
        OpenMetrics; node_exporter answers the same way); OpenMetrics only when that is all the
        client takes.
        """
        if wants_openmetrics_only(accept):
            encoder, content_type = choose_encoder(accept)
            return encoder(self.registry), content_type
        return self.text(), TEXT_CONTENT_TYPE

    def text(self) -> bytes:
        """One scrape in the Prometheus text format."""
        return self.renderer.render(self.registry.collect())

    def close(self) -> None:
        for closer in self.closers:
            try:
                closer.close()  # type: ignore[attr-defined]
            except Exception:  # closing is best effort
                log.debug("closing %r failed", closer, exc_info=True)


def wants_openmetrics_only(accept: str) -> bool:
    """Whether an Accept header asks for OpenMetrics and does not also take the text format."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    return "application/openmetrics-text" in kinds and not any(k in ("text/plain", "*/*", "text/*") for k in kinds)


def system_libvirt_source(host: Host, *, xml_ttl_s: float = 60.0) -> LibvirtSource:
    """The host's system libvirt daemon; absent (not an error) when none of its sockets exist."""
    if host.root == "/":
        uri = "qemu:///system"
    else:  # the live host's / mounted elsewhere (a DaemonSet's /host): address the socket by path
        found = next((p for p in SYSTEM_SOCKETS if host.exists(p)), SYSTEM_SOCKETS[0])
        uri = f"qemu:///system?socket={host.fs_path(found)}"
    return LibvirtSource(uri, presence=lambda: any(host.exists(p) for p in SYSTEM_SOCKETS), xml_ttl_s=xml_ttl_s,
                         label="qemu:///system")


def build_metrics(inventory: InventoryProvider, host: Host, options: MetricsOptions | None = None, *,
                  libvirt: Sequence[LibvirtSource] | None = None, nvml: NvmlSource | None = None,
                  extra: Sequence[NodeCollector] = ()) -> NodeMetrics:
    """The standard collectors for ``host``, on a fresh registry.

    ``libvirt``/``nvml`` inject ready-made sources (tests, benchmarks); otherwise they are created
    from ``options`` when live sources are allowed (the Host's root is ``/``, or ``options.live``).
    """
    options = options or MetricsOptions()
    if options.live is None:  # Host records why a live source was skipped under another root
        live_nvml, live_libvirt = host.live_source("nvml"), host.live_source("libvirt")
    else:
        live_nvml = live_libvirt = options.live
    closers: list[object] = []
    collectors: list[NodeCollector] = [
        CapacityCollector(inventory), NodeFactsCollector(inventory), ChecksCollector(inventory, options.workloads),
        GpuSysfsCollector(inventory), VgpuCollector(inventory),
    ]
    if nvml is None and options.nvml and live_nvml:
        nvml = NvmlSource()
    if nvml is not None:
        closers.append(nvml)
        collectors.append(NvmlCollector(nvml, inventory))

    pool: LibvirtPool | None = None
    if libvirt is not None:
        pool = LibvirtPool(list(libvirt))
    elif options.libvirt and live_libvirt:
        sources = ([LibvirtSource(uri, xml_ttl_s=options.xml_ttl_s) for uri in options.libvirt_uris]
                   if options.libvirt_uris is not None else [system_libvirt_source(host, xml_ttl_s=options.xml_ttl_s)])
        pool = LibvirtPool(sources, host=host, kubevirt=options.kubevirt, xml_ttl_s=options.xml_ttl_s)
    if pool is not None:
        closers.append(pool)
        placement = PlacementReader(host, refresh_s=options.placement_refresh_s) if live_libvirt else None
        collectors.append(VmCollector(pool.sources, inventory, placement, max_remote_ratio=options.max_remote_ratio,
                                      vm_metrics=options.vm_metrics))

    collectors.extend(extra)
    supervisor = Supervisor(collectors)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(supervisor)
    if options.process:
        ProcessCollector(registry=registry)
    return NodeMetrics(registry, supervisor, closers)
