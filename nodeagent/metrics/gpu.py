"""GPU series: sysfs facts for every GPU (from the Inventory), NVML readings for host-driver GPUs.

The sysfs half is what no vendor exporter can give for a GPU passed through to a VM: once a GPU
is bound to vfio-pci, DCGM and nvidia-smi no longer see it, but its PCIe link and AER counters
are still in sysfs, and a GPU that trained at x8 or logs AER errors is worth an alert whichever
driver holds it. Which VM holds a passthrough GPU comes from libvirt (see ``vm.py``).

The NVML half is a separate collector so that a missing or broken driver takes down only
``nodeagent_collector_up{collector="nvml"}``, never the sysfs series.

Every GPU series carries ``pci_bus_id`` (NVML's and dcgm-exporter's form of the address,
``00000000:3B:00.0``) next to ``pci_address``, and the NVML series the GPU's ``uuid``
(``GPU-…``, dcgm-exporter's ``UUID``), so they join dcgm-exporter's series. The PCIe link speed is
also exported in the base unit (transfers per second) next to the documented GT/s series.
"""

from __future__ import annotations

from collections.abc import Iterator

from nodeagent.inventory import Inventory
from nodeagent.metrics.base import InventoryCollector, InventoryProvider
from nodeagent.metrics.label_values import driver_label, numa_label, optional_label, pci_bus_id
from nodeagent.metrics.prom import CounterMetricFamily, GaugeMetricFamily, Metric
from nodeagent.sources.nvml_source import NvmlSource

NVML_DRIVERS = frozenset({"nvidia"})  # host drivers NVML can read
GT = 1e9  # transfers per second in a GT/s
MIB = 2**20
GPU = ["pci_address", "pci_bus_id"]  # how every GPU series names its GPU
NVML_GPU = [*GPU, "uuid"]  # NVML knows the GPU's UUID as well (GPU-…; dcgm-exporter's UUID label)


class GpuSysfsCollector(InventoryCollector):
    name = "gpu"

    def families(self, inv: Inventory) -> Iterator[Metric]:
        info = GaugeMetricFamily("nodeagent_gpu_info", "A GPU on the PCI bus, whichever driver holds it.",
                                 labels=[*GPU, "vendor_id", "device_id", "model", "driver", "numa_node",
                                         "iommu_group"])
        speed = GaugeMetricFamily("nodeagent_gpu_pcie_link_speed_gts",
                                  "Current PCIe link speed of the GPU, in GT/s (kept for compatibility; "
                                  "nodeagent_gpu_pcie_link_speed_transfers_per_second is the base unit).", labels=GPU)
        speed_base = GaugeMetricFamily("nodeagent_gpu_pcie_link_speed_transfers_per_second",
                                       "Current PCIe link speed of the GPU, in transfers per second per lane.",
                                       labels=GPU)
        width = GaugeMetricFamily("nodeagent_gpu_pcie_link_width", "Current PCIe link width of the GPU, in lanes.",
                                  labels=GPU)
        max_speed = GaugeMetricFamily("nodeagent_gpu_pcie_link_max_speed_gts",
                                      "Fastest PCIe link speed the GPU supports, in GT/s.", labels=GPU)
        max_speed_base = GaugeMetricFamily("nodeagent_gpu_pcie_link_max_speed_transfers_per_second",
                                           "Fastest PCIe link speed the GPU supports, in transfers per second "
                                           "per lane.", labels=GPU)
        max_width = GaugeMetricFamily("nodeagent_gpu_pcie_link_max_width",
                                      "Widest PCIe link the GPU supports, in lanes.", labels=GPU)
        degraded = GaugeMetricFamily("nodeagent_gpu_pcie_link_degraded",
                                     "1 when the GPU's link trained below its maximum speed or width.", labels=GPU)
        aer = CounterMetricFamily("nodeagent_gpu_aer_errors",
                                  "PCIe AER errors the GPU reported since boot, by severity.",
                                  labels=[*GPU, "severity"])
        power = GaugeMetricFamily("nodeagent_gpu_power_state",
                                  "PCI power state of the GPU (D0, D3hot, D3cold…): 1 for the current one.",
                                  labels=[*GPU, "state"])
        ready = GaugeMetricFamily("nodeagent_gpu_passthrough_ready",
                                  "1 when the GPU and its whole IOMMU group are bound to vfio and the IOMMU is on.",
                                  labels=GPU)
        for gpu in inv.gpus:
            ids = [gpu.address, pci_bus_id(gpu.address)]
            info.add_metric([*ids, gpu.vendor_id, gpu.device_id, gpu.name, driver_label(gpu.driver),
                             numa_label(gpu.numa_node), optional_label(gpu.iommu_group)], 1.0)
            link = gpu.link
            for family, value in ((speed, link.current_speed_gts), (width, link.current_width),
                                  (max_speed, link.max_speed_gts), (max_width, link.max_width)):
                if value is not None:
                    family.add_metric(ids, value)
            for family, value in ((speed_base, link.current_speed_gts), (max_speed_base, link.max_speed_gts)):
                if value is not None:
                    family.add_metric(ids, round(value * GT))
            if link.degraded is not None:
                degraded.add_metric(ids, 1.0 if link.degraded else 0.0)
            for severity, count in sorted(gpu.aer.items()):
                aer.add_metric([*ids, severity], count)
            if gpu.power_state:
                power.add_metric([*ids, gpu.power_state], 1.0)
            ready.add_metric(ids, 1.0 if gpu.passthrough_ready else 0.0)
        yield from (info, speed, speed_base, width, max_speed, max_speed_base, max_width, degraded, aer, power, ready)
        yield from product_families(inv)
        yield from nvswitch_families(inv)


def product_families(inv: Inventory) -> Iterator[Metric]:
    """What each GPU's PCI ids say (discover/gpuproducts.py) and which NVLink fabric it is on."""
    product = GaugeMetricFamily("nodeagent_gpu_product_info",
                                "The GPU's product, named from the host's pci.ids as KubeVirt's GPU device plugin "
                                "names its resource.", labels=[*GPU, "product"])
    memory = GaugeMetricFamily("nodeagent_gpu_memory_nominal_bytes",
                               "The GPU model's nominal memory, from nodeagent's table of datacenter SKUs (absent "
                               "when unknown); nodeagent_gpu_memory_total_bytes is NVML's reading.", labels=GPU)
    fabric = GaugeMetricFamily("nodeagent_gpu_nvlink_fabric_info",
                               "The NVLink fabric (NVSwitches of one generation) the GPU is on, and who drives its "
                               "NVSwitches (host, passthrough, mixed).", labels=[*GPU, "fabric", "mode"])
    modes = {f.id: f.mode for f in inv.nvlink_fabrics}
    for gpu in inv.gpus:
        ids = [gpu.address, pci_bus_id(gpu.address)]
        product.add_metric([*ids, gpu.product or gpu.device_id], 1.0)
        if gpu.memory_mib is not None:
            memory.add_metric(ids, gpu.memory_mib * MIB)
        if gpu.nvlink_fabric is not None:
            fabric.add_metric([*ids, gpu.nvlink_fabric, modes.get(gpu.nvlink_fabric, "")], 1.0)
    yield from (product, memory, fabric)


def nvswitch_families(inv: Inventory) -> Iterator[Metric]:
    """NVSwitch PCI functions (HGX baseboards): binding, IOMMU group, power state."""
    info = GaugeMetricFamily("nodeagent_nvswitch_info", "An NVSwitch on the PCI bus, whichever driver holds it.",
                             labels=[*GPU, "device_id", "generation", "driver", "numa_node", "iommu_group"])
    ready = GaugeMetricFamily("nodeagent_nvswitch_passthrough_ready",
                              "1 when the NVSwitch and its whole IOMMU group are bound to vfio and the IOMMU is on.",
                              labels=GPU)
    power = GaugeMetricFamily("nodeagent_nvswitch_power_state",
                              "PCI power state of the NVSwitch (D0, D3hot, D3cold…): 1 for the current one.",
                              labels=[*GPU, "state"])
    for switch in inv.nvswitch_devices:
        ids = [switch.address, pci_bus_id(switch.address)]
        info.add_metric([*ids, switch.device_id, optional_label(switch.generation), driver_label(switch.driver),
                         numa_label(switch.numa_node), optional_label(switch.iommu_group)], 1.0)
        ready.add_metric(ids, 1.0 if switch.passthrough_ready else 0.0)
        if switch.power_state:
            power.add_metric([*ids, switch.power_state], 1.0)
    yield from (info, ready, power)


class NvmlCollector:
    """Live readings of host-driver GPUs. NVML is not touched on a host with no such GPU."""

    name = "nvml"
    timeout_s: float | None = 5.0

    def __init__(self, source: NvmlSource, inventory: InventoryProvider) -> None:
        self._source = source
        self._inventory = inventory

    def collect(self) -> Iterator[Metric]:
        if not any(g.driver in NVML_DRIVERS for g in self._inventory().gpus):
            return
        reading = self._source.read()
        families = {
            "utilization": GaugeMetricFamily("nodeagent_gpu_utilization_ratio",
                                             "Fraction of the last sample period the GPU was busy (NVML).",
                                             labels=NVML_GPU),
            "mem_used": GaugeMetricFamily("nodeagent_gpu_memory_used_bytes",
                                          "GPU memory in use, without the driver's reservation (NVML).",
                                          labels=NVML_GPU),
            "mem_total": GaugeMetricFamily("nodeagent_gpu_memory_total_bytes", "GPU memory installed (NVML).",
                                           labels=NVML_GPU),
            "mem_reserved": GaugeMetricFamily("nodeagent_gpu_memory_reserved_bytes",
                                              "GPU memory the driver reserves for itself (NVML).",
                                              labels=NVML_GPU),
            "temperature": GaugeMetricFamily("nodeagent_gpu_temperature_celsius", "GPU core temperature (NVML).",
                                             labels=NVML_GPU),
            "power": GaugeMetricFamily("nodeagent_gpu_power_watts", "GPU power draw (NVML).",
                                       labels=NVML_GPU),
            "power_limit": GaugeMetricFamily("nodeagent_gpu_power_limit_watts",
                                             "Power limit the driver enforces on the GPU (NVML).",
                                             labels=NVML_GPU),
        }
        energy = CounterMetricFamily("nodeagent_gpu_energy_joules",
                                     "Energy the GPU consumed since the driver was loaded (NVML).",
                                     labels=NVML_GPU)
        for gpu in reading.gpus:
            label = [gpu.pci_address, pci_bus_id(gpu.pci_address), gpu.uuid or ""]
            for key, value in (("utilization", gpu.utilization_ratio), ("mem_used", gpu.memory_used_bytes),
                               ("mem_total", gpu.memory_total_bytes), ("mem_reserved", gpu.memory_reserved_bytes),
                               ("temperature", gpu.temperature_celsius),
                               ("power", gpu.power_watts), ("power_limit", gpu.power_limit_watts)):
                if value is not None:
                    families[key].add_metric(label, value)
            if gpu.energy_joules is not None:
                energy.add_metric(label, gpu.energy_joules)
        yield from families.values()
        yield energy
        if reading.driver_version:
            driver = GaugeMetricFamily("nodeagent_nvidia_driver_info", "The loaded NVIDIA driver's version (NVML).",
                                       labels=["version"])
            driver.add_metric([reading.driver_version], 1.0)
            yield driver
