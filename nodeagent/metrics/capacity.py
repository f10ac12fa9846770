"""Per-NUMA-node capacity from the current Inventory: CPUs, isolated CPUs, memory, hugepages, GPUs.

These series are what the scheduler-facing side needs to reason about single-NUMA placement: a
VM that asks for 16 dedicated CPUs and 64 GiB of 1Gi pages fits on a node only if one NUMA node
has both. Nothing here reads the host; the inventory provider is refreshed by the daemon.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from nodeagent.inventory import Inventory
from nodeagent.metrics.base import InventoryCollector
from nodeagent.metrics.label_values import driver_label, numa_label
from nodeagent.metrics.prom import GaugeMetricFamily, Metric


class CapacityCollector(InventoryCollector):
    name = "capacity"

    def families(self, inv: Inventory) -> Iterator[Metric]:
        isolated = set(inv.cpu.isolated)
        cpus = GaugeMetricFamily("nodeagent_numa_node_cpus", "Logical CPUs of the NUMA node.",
                                 labels=["numa_node"])
        isolated_cpus = GaugeMetricFamily(
            "nodeagent_numa_node_isolated_cpus",
            "CPUs of the NUMA node isolated from the scheduler (/sys/devices/system/cpu/isolated).",
            labels=["numa_node"])
        memory = GaugeMetricFamily("nodeagent_numa_node_memory_bytes", "Memory of the NUMA node.",
                                   labels=["numa_node", "state"])
        hugepages = GaugeMetricFamily("nodeagent_numa_hugepages",
                                      "Hugepages of one size on the NUMA node, in pages.",
                                      labels=["numa_node", "size", "state"])
        hugepage_bytes = GaugeMetricFamily("nodeagent_numa_hugepages_bytes",
                                           "Hugepages of one size on the NUMA node, in bytes.",
                                           labels=["numa_node", "size", "state"])
        for node in inv.numa:
            node_id = numa_label(node.id)
            cpus.add_metric([node_id], len(node.cpus))
            isolated_cpus.add_metric([node_id], len(isolated.intersection(node.cpus)))
            for state, value in (("total", node.memory_total_bytes), ("free", node.memory_free_bytes)):
                if value is not None:
                    memory.add_metric([node_id, state], value)
            for size, pool in sorted(node.hugepages.items()):
                for state, pages in (("total", pool.total), ("free", pool.free), ("surplus", pool.surplus)):
                    if pages is not None:
                        hugepages.add_metric([node_id, size, state], pages)
                        hugepage_bytes.add_metric([node_id, size, state], pages * pool.size_kb * 1024)
        gpus = GaugeMetricFamily("nodeagent_numa_gpus", "GPUs attached to the NUMA node, by driver.",
                                 labels=["numa_node", "driver"])
        by_node_driver = Counter((numa_label(g.numa_node), driver_label(g.driver)) for g in inv.gpus)
        for (node_id, driver), count in sorted(by_node_driver.items()):
            gpus.add_metric([node_id, driver], count)
        yield from (cpus, isolated_cpus, memory, hugepages, hugepage_bytes, gpus)
