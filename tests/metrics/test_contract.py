"""Every metric of CONTRACT.md §5 exists with exactly its labels, and the exposition follows the
naming rules (base units, ``_total`` only on counters) and passes ``promtool check metrics``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nodeagent.inventory import Inventory
from nodeagent.sources.nvml_source import NvmlSource
from tests.metrics.stubs import complete_metrics
from tests.metrics.test_nvml import HOST_DRIVER_GPUS, FakeGpu, FakeNvml
from tests.support.exposition import Exposition, scrape

NVML_GPU = ("pci_bus_id", "uuid")
VM = ("namespace", "name")  # KubeVirt's VMI namespace and name, on every per-VM series

# CONTRACT.md §5, name → label names
CONTRACT: dict[str, set[str]] = {
    "nodeagent_numa_node_cpus": {"numa_node"},
    "nodeagent_numa_node_isolated_cpus": {"numa_node"},
    "nodeagent_numa_node_memory_bytes": {"numa_node", "state"},
    "nodeagent_numa_hugepages": {"numa_node", "size", "state"},
    "nodeagent_numa_gpus": {"numa_node", "driver"},
    "nodeagent_kvm_available": set(),
    "nodeagent_iommu_enabled": set(),
    "nodeagent_ksm_running": set(),
    "nodeagent_ksm_pages_sharing": set(),
    "nodeagent_reboot_required": set(),
    "nodeagent_kubelet_restart_required": set(),
    "nodeagent_check_status": {"check", "status"},
    "nodeagent_workload_ready": {"workload"},
    "nodeagent_info": {"version", "kernel", "cpu_model"},
    # GPU series: CONTRACT.md §5's labels plus pci_bus_id, and uuid where NVML reads the GPU (issue 15:
    # they join dcgm-exporter's series)
    "nodeagent_gpu_info": {"pci_address", "vendor_id", "device_id", "model", "driver", "numa_node", "iommu_group",
                           "pci_bus_id"},
    "nodeagent_gpu_pcie_link_speed_gts": {"pci_address", "pci_bus_id"},
    "nodeagent_gpu_pcie_link_width": {"pci_address", "pci_bus_id"},
    "nodeagent_gpu_pcie_link_degraded": {"pci_address", "pci_bus_id"},
    "nodeagent_gpu_aer_errors_total": {"pci_address", "severity", "pci_bus_id"},
    "nodeagent_gpu_assigned": {"pci_address", "domain", "namespace", "name", "pci_bus_id"},
    "nodeagent_gpu_utilization_ratio": {"pci_address", *NVML_GPU},
    "nodeagent_gpu_memory_used_bytes": {"pci_address", *NVML_GPU},
    "nodeagent_gpu_memory_total_bytes": {"pci_address", *NVML_GPU},
    "nodeagent_gpu_temperature_celsius": {"pci_address", *NVML_GPU},
    "nodeagent_gpu_power_watts": {"pci_address", *NVML_GPU},
    "nodeagent_gpu_energy_joules_total": {"pci_address", *NVML_GPU},
    "nodeagent_vm_info": {"domain", "namespace", "name", "uuid"},
    # per-VM series: CONTRACT.md §5's labels plus namespace and name (issue 15: they join kubevirt_vmi_*)
    "nodeagent_vm_vcpus": {"domain", *VM},
    "nodeagent_vm_cpu_seconds_total": {"domain", *VM},
    "nodeagent_vm_vcpu_wait_seconds_total": {"domain", "vcpu", *VM},
    "nodeagent_vm_memory_bytes": {"domain", "state", *VM},
    "nodeagent_vm_block_bytes_total": {"domain", "device", "direction", *VM},
    "nodeagent_vm_network_bytes_total": {"domain", "interface", "direction", *VM},
    "nodeagent_vm_numa_memory_bytes": {"domain", "numa_node", *VM},
    "nodeagent_vm_numa_aligned": {"domain", *VM},
    "nodeagent_vm_hugepages_backed": {"domain", *VM},
    "nodeagent_vm_vcpus_pinned": {"domain", *VM},
    "nodeagent_collector_up": {"collector"},
    "nodeagent_collector_duration_seconds": {"collector"},
}

STATE_VALUES = {
    "nodeagent_numa_node_memory_bytes": {"total", "free"},
    "nodeagent_numa_hugepages": {"total", "free", "surplus"},
}


@pytest.fixture
def complete(fixture_inventory: Callable[[str], Inventory], tmp_path: Path, mocker: Any) -> Exposition:
    FakeNvml(mocker, [FakeGpu(a) for a in HOST_DRIVER_GPUS])
    return scrape(complete_metrics(fixture_inventory("intel-2s-8gpu"), tmp_path, NvmlSource()))


def test_every_contract_metric_with_its_exact_labels(complete: Exposition) -> None:
    for name, labels in CONTRACT.items():
        samples = complete.get(name)
        assert samples, f"{name} is missing"
        for sample in samples:
            assert set(sample.labels) == labels, f"{name} has labels {sorted(sample.labels)}, contract says {labels}"
    for name, values in STATE_VALUES.items():
        assert {s.labels["state"] for s in complete.get(name)} == values
    assert {s.labels["size"] for s in complete.get("nodeagent_numa_hugepages")} == {"2Mi", "1Gi"}
    assert {s.labels["collector"] for s in complete.get("nodeagent_collector_up")} == {
        "capacity", "node", "checks", "gpu", "vgpu", "nvml", "vm"}
    assert all(s.value == 1 for s in complete.get("nodeagent_collector_up"))


def test_complete_vm_series_from_a_real_stats_record(complete: Exposition) -> None:
    domain = "team-a_trainer-0"
    assert complete.value("nodeagent_vm_cpu_seconds_total", domain=domain) == pytest.approx(1.747148)
    assert complete.value("nodeagent_vm_vcpu_wait_seconds_total", domain=domain, vcpu="0") == pytest.approx(
        0.008450422)  # delay: the steal time
    assert complete.value("nodeagent_vm_vcpu_wait_seconds_total", domain=domain, vcpu="1") == pytest.approx(
        700e-9)  # no delay reported: wait
    assert complete.value("nodeagent_vm_memory_bytes", domain=domain, state="rss") == 39388 * 1024
    assert complete.value("nodeagent_vm_memory_bytes", domain=domain, state="actual") == 64 << 20
    assert complete.value("nodeagent_vm_block_bytes_total", domain=domain, device="vda", direction="read") == 512
    assert complete.value("nodeagent_vm_block_time_seconds_total", domain=domain, device="vda",
                          direction="read") == pytest.approx(146517e-9)
    assert complete.value("nodeagent_vm_network_drops_total", domain=domain, interface="vnet3",
                          direction="transmit") == 2
    assert complete.value("nodeagent_vm_numa_aligned", domain=domain) == 1
    assert complete.value("nodeagent_vm_hugepages_backed", domain=domain) == 1
    assert complete.value("nodeagent_vm_vcpus_pinned", domain=domain) == 2
    (assigned,) = complete.get("nodeagent_gpu_assigned")
    assert assigned.labels == {"pci_address": "0000:18:00.0", "pci_bus_id": "00000000:18:00.0", "domain": domain,
                               "namespace": "team-a", "name": "trainer-0"}


def test_naming_rules(complete: Exposition) -> None:
    for family, kind in complete.types.items():
        if not family.startswith("nodeagent_"):
            continue
        samples = [s for s in complete.samples if s.name.startswith(family)]
        if kind == "counter":
            assert all(s.name == family + "_total" for s in samples), family
        else:
            assert not family.endswith("_total"), f"{family} is a {kind} named like a counter"
        for unit in ("_milliseconds", "_kilobytes", "_kib", "_mib", "_percent", "_mhz"):
            assert unit not in family, f"{family}: use base units"
        numa_labels = {k for s in samples for k in s.labels if "numa" in k}
        assert numa_labels <= {"numa_node"}, family


@pytest.mark.prometheus
def test_promtool_check_metrics_is_clean(complete: Exposition) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    result = subprocess.run(["promtool", "check", "metrics"], input=complete.text, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", (
        result.stdout + result.stderr)
