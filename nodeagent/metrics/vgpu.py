"""vGPU pools (nodeagent.vgpupool): instances per physical GPU and type, used and still available.

``nodeagent_vgpu_instances{state="used"}`` counts the instances that exist, whoever created them;
``state="available"`` the instances the kernel says can still be created (mediated devices:
``available_instances``; SR-IOV vGPU: free VFs that list the type as creatable, within the GPU's
nominal memory; see nodeagent.vgpupool).
The two never add up to anything across types: the types of one GPU share its framebuffer.
"""

from __future__ import annotations

from collections.abc import Iterator

from nodeagent.inventory import Inventory
from nodeagent.metrics.base import InventoryCollector
from nodeagent.metrics.label_values import optional_label, pci_bus_id
from nodeagent.metrics.prom import GaugeMetricFamily, Metric
from nodeagent.vgpupool import inventory_pools

GPU = ["pci_address", "pci_bus_id"]


class VgpuCollector(InventoryCollector):
    name = "vgpu"

    def families(self, inv: Inventory) -> Iterator[Metric]:
        instances = GaugeMetricFamily(
            "nodeagent_vgpu_instances",
            "vGPU instances per physical GPU and type: used (they exist, whoever created them) and available "
            "(the kernel says they can still be created; SR-IOV vGPU: free VFs listing the type, within the GPU's "
            "memory).",
            labels=[*GPU, "mode", "type", "name", "state"])
        vfs = GaugeMetricFamily("nodeagent_vgpu_vfs",
                                "SR-IOV VFs of a GPU under the vGPU 17+ host driver: with a vGPU type (assigned) "
                                "or without (free).", labels=[*GPU, "state"])
        assigned: dict[str, list[int]] = {}
        for vf in inv.vgpu.sriov_vfs:
            counts = assigned.setdefault(vf.gpu, [0, 0])
            counts[0 if vf.current_type else 1] += 1
        for pool in inventory_pools(inv):
            ids = [pool.gpu, pci_bus_id(pool.gpu)]
            for state, value in (("used", pool.used), ("available", pool.available)):
                instances.add_metric([*ids, pool.mode, pool.type_id, optional_label(pool.name), state], value)
        for gpu, (used, free) in sorted(assigned.items()):
            vfs.add_metric([gpu, pci_bus_id(gpu), "assigned"], used)
            vfs.add_metric([gpu, pci_bus_id(gpu), "free"], free)
        yield from (instances, vfs)
