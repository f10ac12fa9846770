"""Where a VM runs and where its memory is: vCPU affinity, NUMA alignment, pinning, hugepages.

A VM is **NUMA-aligned** when its memory lives on the NUMA nodes of the CPUs its vCPUs may run on.
Remote memory costs 30-80 % more latency; a VM pinned to node 1 whose RAM was faulted in on node 0
(KubeVirt without the memory manager, a misplaced hugepage pool, a migration) is the failure this
detects.

* The CPUs each vCPU may run on come, in order of preference, from the vCPU thread's actual
  affinity in ``/proc`` (vcpupin, ``<vcpu cpuset>`` and a pod's cgroup cpuset all end up there),
  then from the domain XML (``<vcpupin>``, then ``<vcpu cpuset>``), then all online CPUs.
* The memory is the QEMU process's resident anonymous, memfd and hugetlbfs memory per node (see
  :mod:`nodeagent.sources.numa_maps`).
* Aligned when at most ``max_remote_ratio`` (5 % by default) of that memory is on other nodes:
  QEMU's own heap, touched by its emulator and I/O threads wherever they ran, must not flag a VM.

A vCPU counts as **pinned** when the domain XML restricts it (``<vcpupin>`` or ``<vcpu cpuset>``)
to fewer than all online CPUs; a cgroup cpuset alone (a shared-CPU KubeVirt pod) is not pinning.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from nodeagent.host import Host
from nodeagent.inventory import NumaNode
from nodeagent.sources.libvirt_source import DomainSample, DomainXml
from nodeagent.sources.numa_maps import NumaMemory, read_numa_maps
from nodeagent.sources.qemu_process import QemuProcessIndex, VcpuThread, vcpu_threads

DEFAULT_MAX_REMOTE_RATIO = 0.05


@dataclass(frozen=True)
class ProcessPlacement:
    """What ``/proc`` says about one running QEMU process."""

    pid: int
    threads: list[VcpuThread]
    memory: NumaMemory | None


def vcpu_allowed_cpus(vcpu_count: int, xml: DomainXml | None, threads: Iterable[VcpuThread],
                      online: list[int]) -> dict[int, list[int]]:
    """vCPU index → CPUs it may run on (see the module docstring for the order of sources)."""
    by_thread = {t.vcpu: t.allowed_cpus for t in threads}
    result: dict[int, list[int]] = {}
    for vcpu in range(vcpu_count):
        if vcpu in by_thread:
            result[vcpu] = by_thread[vcpu]
        elif xml is not None and vcpu in xml.vcpupins:
            result[vcpu] = xml.vcpupins[vcpu]
        elif xml is not None and xml.vcpu_cpuset:
            result[vcpu] = xml.vcpu_cpuset
        else:
            result[vcpu] = list(online)
    return result


def pinned_vcpus(vcpu_count: int, xml: DomainXml | None, online: list[int]) -> int | None:
    """How many vCPUs the domain XML pins to a subset of the host's CPUs (None: no XML)."""
    if xml is None:
        return None
    if not xml.vcpupins and not xml.vcpu_cpuset:
        return 0
    everything = set(online)
    pinned = 0
    for vcpu in range(vcpu_count):
        cpus = xml.vcpupins.get(vcpu, xml.vcpu_cpuset)
        if cpus and (not everything or not everything <= set(cpus)):
            pinned += 1
    return pinned


def numa_nodes_of(cpus: Iterable[int], numa: Iterable[NumaNode]) -> set[int]:
    wanted = set(cpus)
    return {node.id for node in numa if wanted.intersection(node.cpus)}


def numa_aligned(memory: NumaMemory, allowed_nodes: set[int], *,
                 max_remote_ratio: float = DEFAULT_MAX_REMOTE_RATIO) -> bool | None:
    """Whether the memory is on ``allowed_nodes`` (within the tolerance); None when unknowable."""
    total = memory.total_bytes
    if total <= 0 or not allowed_nodes:
        return None
    remote = sum(size for node, size in memory.node_bytes.items() if node not in allowed_nodes)
    return remote <= max_remote_ratio * total


class PlacementReader:
    """Reads ``/proc`` for running QEMU domains, at most once per ``refresh_s`` per domain.

    numa_maps makes the kernel walk the whole page table of the process; for a VM with hundreds
    of GiB of 4 KiB pages that is not something to do on every scrape, and placement changes on
    the scale of minutes, not seconds.
    """

    def __init__(self, host: Host, *, refresh_s: float = 30.0, rescan_interval_s: float = 30.0) -> None:
        self._host = host
        self._refresh_s = refresh_s
        self._index = QemuProcessIndex(host, rescan_interval_s=rescan_interval_s)
        self._cache: dict[str, tuple[float, ProcessPlacement]] = {}
        self._lock = threading.Lock()

    def read(self, sample: DomainSample) -> ProcessPlacement | None:
        if sample.driver.upper() != "QEMU":
            return None  # other drivers (test, lxc, …) have no QEMU process to read
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(sample.uuid)
        if cached is not None and now - cached[0] < self._refresh_s and self._alive(cached[1].pid, sample):
            return cached[1]
        pid = self._index.pid(sample.uuid)
        if pid is None:
            return None
        placement = ProcessPlacement(pid, vcpu_threads(self._host, pid), read_numa_maps(self._host, pid))
        with self._lock:
            self._cache[sample.uuid] = (now, placement)
        return placement

    def forget(self, keep: set[str]) -> None:
        """Drop what is cached for domains that are gone."""
        with self._lock:
            for uuid in [u for u in self._cache if u not in keep]:
                del self._cache[uuid]
        self._index.forget(keep)

    def _alive(self, pid: int, sample: DomainSample) -> bool:
        return self._index.pid(sample.uuid) == pid
