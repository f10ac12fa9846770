"""NUMA nodes: CPUs, distances, memory and hugepages per node (per size, from sysfs)."""

from __future__ import annotations

from nodeagent.discover.memory import read_hugepage_pools, read_meminfo
from nodeagent.host import Host
from nodeagent.inventory import CpuInfo, HugepagePool, MemoryInfo, NumaNode
from nodeagent.parse import parse_cpumask

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
    cpus, source = _node_cpus(host, base)
    return NumaNode(
        id=node_id,
        cpus=cpus,
        memory_total_bytes=meminfo.get("MemTotal"),
        memory_free_bytes=meminfo.get("MemFree"),
        distances=distances,
        hugepages=read_hugepage_pools(host, f"{base}/hugepages", with_reserved=False),
        cpus_source=source,
    )


def _node_cpus(host: Host, base: str) -> tuple[list[int], str | None]:
    """A node's CPUs from ``cpulist``, else its ``cpumap`` mask, else its ``cpuN`` links.

    An empty ``cpulist`` is a fact (a memory-only node: CXL, HBM, a GPU's memory on Grace-Hopper);
    a missing one is not, so each fallback says so in a warning, and no source at all is reported
    as unknown (``cpus_source`` None), never as a confident empty list.
    """
    cpus = host.read_cpulist(f"{base}/cpulist")
    if cpus is not None:
        return cpus, "cpulist"
    mask = host.read_text(f"{base}/cpumap")
    if mask is not None:
        try:
            cpus = parse_cpumask(mask)
        except ValueError as exc:
            host.warn(f"{base}/cpumap", f"{exc}; trying the cpuN links")
        else:
            host.warn(f"{base}/cpulist", "not present; CPUs decoded from cpumap")
            return cpus, "cpumap"
    links = sorted(int(e[3:]) for e in host.listdir(base) if e.startswith("cpu") and e[3:].isdigit())
    if links:
        host.warn(f"{base}/cpulist", "not present (nor a readable cpumap); CPUs taken from the cpuN links")
        return links, "links"
    host.warn(f"{base}/cpulist", "not present, nor cpumap or cpuN links: this node's CPUs are unknown")
    return [], None


def _whole_host_node(cpu: CpuInfo, memory: MemoryInfo) -> NumaNode:
    pools = {size: HugepagePool(p.size, p.size_kb, p.total, p.free, p.surplus) for size, p in memory.hugepages.items()}
    return NumaNode(id=0, cpus=list(cpu.online), memory_total_bytes=memory.total_bytes,
                    memory_free_bytes=None, distances=[10], hugepages=pools)
