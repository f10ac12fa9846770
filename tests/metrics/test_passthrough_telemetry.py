"""What the host reports of a GPU passed through to a VM, and that the 95 % GPU alerts cannot fire for one.

On intel-2s-8gpu four H100s are on vfio-pci (passthrough-ready, parked in D3hot) and four on nvidia.
NVML is faked at pynvml's boundary and, like the real driver, enumerates only the host-driver GPUs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.inventory import Inventory
from nodeagent.sources.nvml_source import NvmlSource
from tests.metrics.test_nvml import HOST_DRIVER_GPUS, FakeGpu, FakeNvml, _scrape_with

RULES = Path(__file__).resolve().parents[2] / "daemonset" / "monitoring" / "rules" / "nodeagent.rules.yaml"
NVML_ALERTS = ("NodeagentGPUUtilizationHigh", "NodeagentGPUMemoryHigh")


@pytest.fixture(scope="module")
def inv(fixture_inventory: Callable[[str], Inventory]) -> Inventory:
    return fixture_inventory("intel-2s-8gpu")


def _alerts() -> dict[str, dict[str, Any]]:
    rules = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def test_the_gpu_alerts_read_only_nvml_series(inv: Inventory, tmp_path: Path, mocker: Any) -> None:
    FakeNvml(mocker, [FakeGpu(a) for a in HOST_DRIVER_GPUS])
    exposition = _scrape_with(inv, tmp_path, NvmlSource())
    passthrough = sorted(g.address for g in inv.passthrough_gpus)
    assert passthrough and not set(passthrough) & set(HOST_DRIVER_GPUS)
    alerts = _alerts()
    for alert in NVML_ALERTS:
        names = set(re.findall(r"\bnodeagent_[a-z_]+", alerts[alert]["expr"]))
        assert names, alert
        for name in names:
            addresses = {s.labels.get("pci_address") for s in exposition.get(name)}
            # Every series the alert reads is NVML's: present for the host-driver GPUs, absent for the
            # passthrough ones (so the alert cannot fire for a GPU a VM owns, busy or not).
            assert addresses == set(HOST_DRIVER_GPUS), (alert, name)
        assert "Host-driver GPUs only" in alerts[alert]["annotations"]["description"]  # and says so


def test_what_the_host_still_reports_for_a_passthrough_gpu(inv: Inventory, tmp_path: Path, mocker: Any) -> None:
    FakeNvml(mocker, [FakeGpu(a) for a in HOST_DRIVER_GPUS])
    exposition = _scrape_with(inv, tmp_path, NvmlSource())
    for gpu in inv.passthrough_gpus:
        at = {"pci_address": gpu.address}
        # vfio-pci parks a GPU no VM has opened in D3hot (the fixture's sysfs power_state)
        assert exposition.value("nodeagent_gpu_power_state", state="D3hot", **at) == 1
        assert exposition.value("nodeagent_gpu_pcie_link_width", **at) == gpu.link.current_width
        assert exposition.value("nodeagent_gpu_aer_errors_total", severity="fatal", **at) == gpu.aer["fatal"]
        assert exposition.value("nodeagent_gpu_passthrough_ready", **at) == 1
        assert exposition.value("nodeagent_gpu_product_info", product="GH100_H100_SXM5_80GB", **at) == 1
        assert not exposition.get("nodeagent_gpu_utilization_ratio", **at)
        assert not exposition.get("nodeagent_gpu_temperature_celsius", **at)
