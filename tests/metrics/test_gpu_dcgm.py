"""GPU series that join dcgm-exporter's: ``pci_bus_id`` in NVML's/DCGM's form on every GPU series,
``uuid`` on the NVML series, and the PCIe link speed in its base unit next to the GT/s series."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nodeagent.inventory import Inventory
from nodeagent.metrics.label_values import pci_bus_id
from nodeagent.sources.nvml_source import NvmlSource
from tests.metrics.stubs import complete_metrics
from tests.metrics.test_nvml import HOST_DRIVER_GPUS, FakeGpu, FakeNvml
from tests.support.exposition import Exposition, scrape


@pytest.mark.parametrize(("address", "bus_id"), [
    ("0000:3b:00.0", "00000000:3B:00.0"),  # dcgm-exporter's form: 8-digit domain, upper-case hex
    ("0000:18:00.1", "00000000:18:00.1"),
    ("10000:e1:1f.7", "00010000:E1:1F.7"),  # a VMD domain
    ("3b:00.0", "00000000:3B:00.0"),  # no domain: 0
    ("not-an-address", "not-an-address"),
    ("0000:zz:00.0", "0000:zz:00.0"),
])
def test_pci_bus_id_form(address: str, bus_id: str) -> None:
    assert pci_bus_id(address) == bus_id


@pytest.fixture
def complete(fixture_inventory: Callable[[str], Inventory], tmp_path: Path, mocker: Any) -> Exposition:
    FakeNvml(mocker, [FakeGpu(a) for a in HOST_DRIVER_GPUS])
    return scrape(complete_metrics(fixture_inventory("intel-2s-8gpu"), tmp_path, NvmlSource()))


def test_every_gpu_series_carries_the_dcgm_bus_id_and_nvml_series_the_uuid(complete: Exposition) -> None:
    gpu_series = [s for s in complete.samples if s.name.startswith("nodeagent_gpu_")]
    assert len({s.name for s in gpu_series}) > 15
    for sample in gpu_series:
        assert sample.labels["pci_bus_id"] == pci_bus_id(sample.labels["pci_address"]), sample
    nvml = complete.get("nodeagent_gpu_utilization_ratio") + complete.get("nodeagent_gpu_energy_joules_total")
    assert {s.labels["pci_address"] for s in nvml} == set(HOST_DRIVER_GPUS)
    assert all(s.labels["uuid"] == f"GPU-{s.labels['pci_address']}" for s in nvml)  # what NVML said
    assert not [s for s in complete.get("nodeagent_gpu_info") if "uuid" in s.labels]  # sysfs knows no UUID


def test_link_speed_in_transfers_per_second_next_to_gts(complete: Exposition) -> None:
    speeds = complete.get("nodeagent_gpu_pcie_link_speed_gts")
    assert speeds
    for gts in speeds:
        base = complete.value("nodeagent_gpu_pcie_link_speed_transfers_per_second",
                              pci_address=gts.labels["pci_address"])
        assert base == pytest.approx(gts.value * 1e9) and base == int(base)
    for gts in complete.get("nodeagent_gpu_pcie_link_max_speed_gts"):
        assert complete.value("nodeagent_gpu_pcie_link_max_speed_transfers_per_second",
                              pci_address=gts.labels["pci_address"]) == pytest.approx(gts.value * 1e9)
    assert {s.value for s in complete.get("nodeagent_gpu_pcie_link_max_speed_transfers_per_second")} <= {
        2.5e9, 5e9, 8e9, 16e9, 32e9, 64e9}
