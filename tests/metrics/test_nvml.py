"""NVML faked at the library boundary (the pynvml functions), on the HGX fixture's inventory.

Only pynvml's own functions are replaced: nodeagent's adapter, its error handling and the
collector run as they would against the real library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.metrics import MetricsOptions, build_metrics
from nodeagent.sources.nvml_source import NvmlSource, normalize_bus_id
from tests.support.exposition import Exposition, scrape

pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")

HOST_DRIVER_GPUS = ["0000:9a:00.0", "0000:9b:00.0", "0000:cb:00.0", "0000:cc:00.0"]  # the spec's nvidia GPUs


@dataclass
class FakeGpu:
    address: str
    util: int = 37
    used: int = 20 << 30
    total: int = 80 << 30
    reserved: int = 616 << 20
    temperature: int = 54
    power_mw: int = 312_500
    limit_mw: int = 700_000
    energy_mj: int = 9_876_543_210
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False


class FakeNvml:
    """Configures pynvml's functions to behave like a driver with the given GPUs."""

    def __init__(self, mocker: Any, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus
        self.init = mocker.patch.object(pynvml, "nvmlInit")
        self.shutdown = mocker.patch.object(pynvml, "nvmlShutdown")
        mocker.patch.object(pynvml, "nvmlDeviceGetCount", side_effect=lambda: len(self.gpus))
        mocker.patch.object(pynvml, "nvmlDeviceGetHandleByIndex", side_effect=lambda i: self.gpus[i])
        mocker.patch.object(pynvml, "nvmlSystemGetDriverVersion", return_value="550.90.07")
        self._patch(mocker, "nvmlDeviceGetPciInfo", "pci",
                    lambda g: SimpleNamespace(busId=("0000" + g.address).upper().encode()))
        self._patch(mocker, "nvmlDeviceGetUtilizationRates", "util", lambda g: SimpleNamespace(gpu=g.util, memory=5))
        self._patch(mocker, "nvmlDeviceGetMemoryInfo", "memory", self._memory)
        self._patch(mocker, "nvmlDeviceGetTemperature", "temperature", lambda g, _sensor: g.temperature)
        self._patch(mocker, "nvmlDeviceGetPowerUsage", "power", lambda g: g.power_mw)
        self._patch(mocker, "nvmlDeviceGetEnforcedPowerLimit", "limit", lambda g: g.limit_mw)
        self._patch(mocker, "nvmlDeviceGetTotalEnergyConsumption", "energy", self._energy)
        self.energy_calls = 0
        self._patch(mocker, "nvmlDeviceGetName", "name", lambda g: "NVIDIA H100 80GB HBM3")
        self._patch(mocker, "nvmlDeviceGetUUID", "uuid", lambda g: f"GPU-{g.address}")

    def _energy(self, gpu: FakeGpu) -> int:
        self.energy_calls += 1
        return gpu.energy_mj

    @staticmethod
    def _memory(gpu: FakeGpu, version: int | None = None) -> SimpleNamespace:
        if version is None:  # v1: the driver's reservation counts as used
            return SimpleNamespace(used=gpu.used + gpu.reserved, total=gpu.total, free=gpu.total - gpu.used)
        if "memory_v2" in gpu.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return SimpleNamespace(used=gpu.used, total=gpu.total, reserved=gpu.reserved,
                               free=gpu.total - gpu.used - gpu.reserved)

    def _patch(self, mocker: Any, function: str, feature: str, answer: Callable[..., Any]) -> None:
        def call(gpu: FakeGpu, *args: Any, **kwargs: Any) -> Any:
            if gpu.lost:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
            if feature in gpu.unsupported:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return answer(gpu, *args, **kwargs)

        mocker.patch.object(pynvml, function, side_effect=call)


@pytest.fixture(scope="module")
def hgx(fixture_inventory: Callable[[str], Inventory]) -> Inventory:
    return fixture_inventory("intel-2s-8gpu")


def _scrape_with(inv: Inventory, tmp_path: Path, source: NvmlSource) -> Exposition:
    node_metrics = build_metrics(lambda: inv, Host(str(tmp_path)), MetricsOptions(live=False, process=False),
                                 nvml=source)
    return scrape(node_metrics)


def test_bus_ids_are_normalized_to_sysfs_form() -> None:
    assert normalize_bus_id("00000000:9A:00.0") == "0000:9a:00.0"
    assert normalize_bus_id(b"00000001:CB:00.0\0") == "0001:cb:00.0"
    assert normalize_bus_id("0000:17:00.0") == "0000:17:00.0"


def test_nvml_series_for_host_driver_gpus(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    FakeNvml(mocker, [FakeGpu(a) for a in HOST_DRIVER_GPUS])
    exposition = _scrape_with(hgx, tmp_path, NvmlSource())
    for address in HOST_DRIVER_GPUS:
        assert exposition.value("nodeagent_gpu_utilization_ratio", pci_address=address) == pytest.approx(0.37)
        assert exposition.value("nodeagent_gpu_memory_used_bytes", pci_address=address) == 20 << 30
        assert exposition.value("nodeagent_gpu_memory_total_bytes", pci_address=address) == 80 << 30
        assert exposition.value("nodeagent_gpu_memory_reserved_bytes", pci_address=address) == 616 << 20
        assert exposition.value("nodeagent_gpu_temperature_celsius", pci_address=address) == 54
        assert exposition.value("nodeagent_gpu_power_watts", pci_address=address) == pytest.approx(312.5)
        assert exposition.value("nodeagent_gpu_power_limit_watts", pci_address=address) == 700
        assert exposition.value("nodeagent_gpu_energy_joules_total", pci_address=address) == pytest.approx(
            9_876_543.21)
    assert exposition.types["nodeagent_gpu_energy_joules"] == "counter"
    assert exposition.value("nodeagent_nvidia_driver_info", version="550.90.07") == 1
    # the NVML addresses join the sysfs series of the same GPUs
    sysfs = {s.labels["pci_address"] for s in exposition.get("nodeagent_gpu_info", driver="nvidia")}
    assert sysfs == set(HOST_DRIVER_GPUS)
    assert exposition.value("nodeagent_collector_up", collector="nvml") == 1


def test_nvml_failing_to_initialize_takes_down_only_nvml(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    fake = FakeNvml(mocker, [])
    fake.init.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    exposition = _scrape_with(hgx, tmp_path, NvmlSource())
    assert exposition.value("nodeagent_collector_up", collector="nvml") == 0
    assert not any(n.startswith("nodeagent_gpu_utilization") for n in exposition.names)
    assert exposition.value("nodeagent_collector_up", collector="gpu") == 1
    assert len(exposition.get("nodeagent_gpu_info")) == len(hgx.gpus)
    assert exposition.value("nodeagent_gpu_pcie_link_degraded", pci_address="0000:cb:00.0") == 1


def test_nvml_library_missing(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    mocker.patch("builtins.__import__", side_effect=no_pynvml)
    source = NvmlSource()
    exposition = _scrape_with(hgx, tmp_path, source)
    assert exposition.value("nodeagent_collector_up", collector="nvml") == 0
    assert exposition.value("nodeagent_collector_up", collector="capacity") == 1


def test_nvml_init_is_not_retried_before_the_interval(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    fake = FakeNvml(mocker, [FakeGpu(HOST_DRIVER_GPUS[0])])
    fake.init.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    clock = mocker.patch("nodeagent.sources.nvml_source.time.monotonic", return_value=1000.0)
    source = NvmlSource(retry_interval_s=60)
    for _ in range(3):
        assert _scrape_with(hgx, tmp_path, source).value("nodeagent_collector_up", collector="nvml") == 0
    assert fake.init.call_count == 1  # a host without the driver pays nothing per scrape
    fake.init.side_effect = None  # the driver got installed
    clock.return_value = 1061.0
    exposition = _scrape_with(hgx, tmp_path, source)
    assert exposition.value("nodeagent_collector_up", collector="nvml") == 1
    assert exposition.value("nodeagent_gpu_temperature_celsius", pci_address=HOST_DRIVER_GPUS[0]) == 54


def test_unsupported_readings_and_a_lost_gpu(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    gpus = [FakeGpu(HOST_DRIVER_GPUS[0], unsupported={"energy", "power"}), FakeGpu(HOST_DRIVER_GPUS[1], lost=True),
            FakeGpu(HOST_DRIVER_GPUS[2], util=100)]
    FakeNvml(mocker, gpus)
    exposition = _scrape_with(hgx, tmp_path, NvmlSource())
    assert exposition.value("nodeagent_collector_up", collector="nvml") == 1
    assert exposition.get("nodeagent_gpu_energy_joules_total", pci_address=HOST_DRIVER_GPUS[0]) == []
    assert exposition.get("nodeagent_gpu_power_watts", pci_address=HOST_DRIVER_GPUS[0]) == []
    assert exposition.value("nodeagent_gpu_temperature_celsius", pci_address=HOST_DRIVER_GPUS[0]) == 54
    # NVML's readings of the lost GPU are gone; its nominal memory comes from the PCI ids, not NVML.
    nvml_readings = ("nodeagent_gpu_utilization_ratio", "nodeagent_gpu_memory_used_bytes",
                     "nodeagent_gpu_memory_total_bytes", "nodeagent_gpu_temperature_celsius")
    assert not [s for s in exposition.samples if s.labels.get("pci_address") == HOST_DRIVER_GPUS[1]
                and s.name in nvml_readings]
    assert exposition.get("nodeagent_gpu_memory_nominal_bytes", pci_address=HOST_DRIVER_GPUS[1]) != []
    assert exposition.value("nodeagent_gpu_utilization_ratio", pci_address=HOST_DRIVER_GPUS[2]) == 1.0


def test_a_driver_unload_drops_the_session_and_it_comes_back(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    fake = FakeNvml(mocker, [FakeGpu(HOST_DRIVER_GPUS[0])])
    source = NvmlSource(retry_interval_s=0)
    assert _scrape_with(hgx, tmp_path, source).value("nodeagent_collector_up", collector="nvml") == 1
    mocker.patch.object(pynvml, "nvmlDeviceGetCount",
                        side_effect=pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED))
    assert _scrape_with(hgx, tmp_path, source).value("nodeagent_collector_up", collector="nvml") == 0
    mocker.patch.object(pynvml, "nvmlDeviceGetCount", side_effect=lambda: 1)
    assert _scrape_with(hgx, tmp_path, source).value("nodeagent_collector_up", collector="nvml") == 1
    assert fake.init.call_count == 2  # re-initialized after the driver came back


def test_nvml_is_not_touched_without_host_driver_gpus(fixture_inventory: Callable[[str], Inventory],
                                                      tmp_path: Path, mocker: Any) -> None:
    fake = FakeNvml(mocker, [])
    exposition = _scrape_with(fixture_inventory("minimal"), tmp_path, NvmlSource())
    assert fake.init.call_count == 0
    assert exposition.value("nodeagent_collector_up", collector="nvml") == 1


def test_close_shuts_nvml_down(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    fake = FakeNvml(mocker, [FakeGpu(HOST_DRIVER_GPUS[0])])
    source = NvmlSource()
    node_metrics = build_metrics(lambda: hgx, Host(str(tmp_path)), MetricsOptions(live=False, process=False),
                                 nvml=source)
    scrape(node_metrics)
    node_metrics.close()
    assert fake.shutdown.call_count == 1


def test_drivers_without_the_v2_memory_call_fall_back_to_v1(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    FakeNvml(mocker, [FakeGpu(HOST_DRIVER_GPUS[0], unsupported={"memory_v2"})])
    exposition = _scrape_with(hgx, tmp_path, NvmlSource())
    # v1 counts the reservation as used, and has no reserved figure
    assert exposition.value("nodeagent_gpu_memory_used_bytes", pci_address=HOST_DRIVER_GPUS[0]) == (20 << 30) + (
        616 << 20)
    assert exposition.get("nodeagent_gpu_memory_reserved_bytes") == []


def test_energy_is_refreshed_in_the_background(hgx: Inventory, tmp_path: Path, mocker: Any) -> None:
    gpu = FakeGpu(HOST_DRIVER_GPUS[0], energy_mj=1_000_000)
    fake = FakeNvml(mocker, [gpu])
    clock = mocker.patch("nodeagent.sources.nvml_source.time.monotonic", return_value=500.0)
    source = NvmlSource(energy_max_age_s=15)
    energy = "nodeagent_gpu_energy_joules_total"
    assert _scrape_with(hgx, tmp_path, source).value(energy, pci_address=gpu.address) == 1000  # first: read now
    gpu.energy_mj = 2_000_000
    clock.return_value = 510.0
    assert _scrape_with(hgx, tmp_path, source).value(energy, pci_address=gpu.address) == 1000  # fresh enough
    assert fake.energy_calls == 1
    clock.return_value = 516.0
    # stale: this scrape serves the last value at once and refreshes behind it
    assert _scrape_with(hgx, tmp_path, source).value(energy, pci_address=gpu.address) == 1000
    source.wait_energy_refresh()
    assert fake.energy_calls == 2
    assert _scrape_with(hgx, tmp_path, source).value(energy, pci_address=gpu.address) == 2000
