"""NUMA nodes: CPUs, distances, memory and hugepages per node (per size, from sysfs)."""

from __future__ import annotations

from nodeagent.discover.memory import read_hugepage_pools, read_meminfo
from nodeagent.host import Host
from nodeagent.inventory import CpuInfo, HugepagePool, MemoryInfo, NumaNode

NODE_DIR = "/sys/devices/system/node"


def discover_numa(host: Host, cpu: CpuInfo, memory: MemoryInfo) -> list[NumaNode]:
    """One entry per online node; a kernel without NUMA support reads as one node 0."""
    node_ids = host.read_cpulist(f"{NODE_DIR}/online")
    if node_ids is None:
        node_ids = sorted(int(e[4:]) for e in host.listdir(NODE_DIR) if e.startswith("node") and e[4:].isdigit())
    if not node_ids:
        return [_whole_host_node(cpu, memory)]
    return [_read_node(host, node_id) for node_id in node_ids]


def _read_node(host: Host, node_id: int) -> NumaNode:
    base = f"{NODE_DIR}/node{node_id}"
    meminfo = read_meminfo(host, f"{base}/meminfo")
    distance_text = host.read_str(f"{base}/distance")
    distances: list[int] = []
    if distance_text:
        try:
            distances = [int(d) for d in distance_text.split()]
        except ValueError:
            host.warn(f"{base}/distance", f"expected integers, found {distance_text[:40]!r}; reported as unknown")
    return NumaNode(
        id=node_id,
        cpus=host.read_cpulist(f"{base}/cpulist") or [],
        memory_total_bytes=meminfo.get("MemTotal"),
        memory_free_bytes=meminfo.get("MemFree"),
        distances=distances,
        hugepages=read_hugepage_pools(host, f"{base}/hugepages", with_reserved=False),
    )


def _whole_host_node(cpu: CpuInfo, memory: MemoryInfo) -> NumaNode:
    pools = {size: HugepagePool(p.size, p.size_kb, p.total, p.free, p.surplus) for size, p in memory.hugepages.items()}
    return NumaNode(id=0, cpus=list(cpu.online), memory_total_bytes=memory.total_bytes,
                    memory_free_bytes=None, distances=[10], hugepages=pools)
