"""Stand-ins for the live sources, at their own interfaces, to build a complete exposition (every
collector, every family) without libvirtd, QEMU or a GPU. The VM data is a real getAllDomainStats
record (see test_sources.REAL_STATS); the real peers are exercised in the other test modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.metrics import MetricsOptions, NodeMetrics, build_metrics
from nodeagent.metrics.placement import ProcessPlacement
from nodeagent.metrics.vm import VmCollector
from nodeagent.sources.libvirt_source import DomainSample, DomainXml, parse_domain_stats
from nodeagent.sources.numa_maps import NumaMemory
from nodeagent.sources.qemu_process import VcpuThread
from tests.metrics.test_sources import REAL_STATS


@dataclass
class StubLibvirt:
    samples: list[DomainSample]
    name: str = "stub:///"

    def present(self) -> bool:
        return True

    def domains(self) -> list[DomainSample]:
        return self.samples


@dataclass
class StubPlacement:
    by_uuid: dict[str, ProcessPlacement]
    forgotten: list[set[str]] = field(default_factory=list)

    def read(self, sample: DomainSample) -> ProcessPlacement | None:
        return self.by_uuid.get(sample.uuid)

    def forget(self, keep: set[str]) -> None:
        self.forgotten.append(keep)


def domain(name: str, uuid: str, *, xml: DomainXml | None, stats: dict[str, Any] | None = None) -> DomainSample:
    return parse_domain_stats(name, uuid, 1, stats if stats is not None else REAL_STATS, xml=xml, driver="QEMU")


def complete_metrics(inv: Inventory, root: Path, nvml: Any) -> NodeMetrics:
    """Every collector with data: a fixture inventory, a (faked) NVML and one pinned, hugepage-backed
    KubeVirt VM holding the first passthrough GPU."""
    gpu = next(g.address for g in inv.gpus if g.passthrough_ready)
    node0 = inv.numa[0].cpus
    xml = DomainXml(vcpus=2, vcpu_cpuset=None, vcpupins={0: node0[2:3], 1: node0[3:4]}, hugepages=True,
                    hostdev_pci=[gpu], kubevirt=True)
    sample = domain("team-a_trainer-0", "9e0b2c52-8c39-4c8e-a1fb-2d3a0a6d1f00", xml=xml)
    placement = ProcessPlacement(4242, [VcpuThread(0, 4243, node0[2:3]), VcpuThread(1, 4244, node0[3:4])],
                                 NumaMemory({0: 16 << 30, 1: 64 << 20}, hugepage_bytes=16 << 30))
    vm = VmCollector(lambda: [StubLibvirt([sample])], lambda: inv,  # type: ignore[list-item]
                     StubPlacement({sample.uuid: placement}))  # type: ignore[arg-type]
    return build_metrics(lambda: inv, Host(str(root)), MetricsOptions(live=False), nvml=nvml, extra=[vm])
