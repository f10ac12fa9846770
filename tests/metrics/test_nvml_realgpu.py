"""NVML against a real NVIDIA GPU, read-only, checked against nvidia-smi (a separate reader of the
same driver). Skipped on machines without an NVIDIA driver; see README "Checking against a real
GPU host read-only". Nothing here changes the GPU: only queries are issued.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.metrics import MetricsOptions, build_metrics
from nodeagent.sources.nvml_source import NvmlSource, normalize_bus_id
from tests.support.exposition import scrape

pytestmark = pytest.mark.realhost

FIELDS = ["pci.bus_id", "memory.total", "memory.used", "memory.reserved", "temperature.gpu", "power.draw",
          "enforced.power.limit", "utilization.gpu"]


@pytest.fixture(scope="module")
def smi() -> dict[str, dict[str, str]]:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi: not a host with the NVIDIA driver")
    result = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"],
                            capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        pytest.skip(f"nvidia-smi failed: {result.stderr.strip()}")
    rows = {}
    for line in result.stdout.strip().splitlines():
        values = dict(zip(FIELDS, (v.strip() for v in line.split(",")), strict=True))
        rows[normalize_bus_id(values["pci.bus_id"])] = values
    return rows


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def test_nvml_agrees_with_nvidia_smi(smi: dict[str, dict[str, str]]) -> None:
    source = NvmlSource()
    try:
        reading = source.read()
    finally:
        source.close()
    assert {g.pci_address for g in reading.gpus} == set(smi)
    for gpu in reading.gpus:
        row = smi[gpu.pci_address]
        assert Path(f"/sys/bus/pci/devices/{gpu.pci_address}").exists(), gpu.pci_address
        assert gpu.memory_total_bytes is not None
        assert abs(gpu.memory_total_bytes / 2**20 - float(row["memory.total"])) <= 1
        mib = 2**20
        assert gpu.memory_used_bytes is not None and abs(gpu.memory_used_bytes / mib - float(row["memory.used"])) <= 64
        if (reserved := _number(row["memory.reserved"])) is not None:
            assert gpu.memory_reserved_bytes is not None and abs(gpu.memory_reserved_bytes / mib - reserved) <= 1
        if (temperature := _number(row["temperature.gpu"])) is not None:
            assert gpu.temperature_celsius is not None and abs(gpu.temperature_celsius - temperature) <= 5
        if (power := _number(row["power.draw"])) is not None:
            assert gpu.power_watts is not None and abs(gpu.power_watts - power) <= max(25.0, 0.25 * power)
        if (limit := _number(row["enforced.power.limit"])) is not None:
            assert gpu.power_limit_watts is not None and abs(gpu.power_limit_watts - limit) <= 1
        if (util := _number(row["utilization.gpu"])) is not None:
            assert gpu.utilization_ratio is not None and abs(gpu.utilization_ratio - util / 100) <= 0.3
        assert gpu.energy_joules is None or gpu.energy_joules > 0


def test_nodeagent_metrics_on_the_gpu_host(smi: dict[str, dict[str, str]], tmp_path: Path) -> None:
    host = Host("/")
    inventory = discover(host)
    node_metrics = build_metrics(lambda: inventory, host, MetricsOptions(libvirt=False))
    try:
        exposition = scrape(node_metrics)
    finally:
        node_metrics.close()
    assert exposition.value("nodeagent_collector_up", collector="nvml") == 1
    for address in smi:
        (info,) = exposition.get("nodeagent_gpu_info", pci_address=address)
        assert (info.labels["vendor_id"], info.labels["driver"]) == ("10de", "nvidia")
        assert exposition.get("nodeagent_gpu_memory_total_bytes", pci_address=address)
        assert exposition.get("nodeagent_gpu_pcie_link_max_width", pci_address=address)
    (tmp_path / "metrics.txt").write_text(exposition.text)
