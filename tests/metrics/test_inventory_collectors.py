"""Capacity, node, checks and GPU-sysfs collectors on fixture hosts and on hand-built inventories.

Expected values come from the fixture specs (``fixtures/specs/*.yaml``), the same numbers the
fixture trees are generated from, not from nodeagent's own code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.host import Host
from nodeagent.inventory import Inventory, PcieLink
from nodeagent.metrics import MetricsOptions, build_metrics
from tests.support.exposition import Exposition, scrape
from tests.support.factories import make_gpu, make_inventory, pool

OFFLINE = MetricsOptions(live=False, process=False)  # inventory-derived collectors only

CATALOG = yaml.safe_load((Path(__file__).resolve().parents[2] / "fixtures" / "specs" / "catalog.yaml").read_text())


def _metrics(inv: Inventory, tmp_path: Path) -> Exposition:
    node_metrics = build_metrics(lambda: inv, Host(str(tmp_path)), OFFLINE)
    return scrape(node_metrics)


def spec_gpus(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Display-class devices of a spec: address → driver, NUMA node, link, AER total."""
    models = CATALOG.get("pci", CATALOG) if isinstance(CATALOG, dict) else {}
    gpus: dict[str, dict[str, Any]] = {}
    for device in spec["pci"]["devices"]:
        model = _catalog_entry(models, device["model"])
        if not str(model.get("class", "")).startswith("0x03"):
            continue
        path = device["path"].split("/")
        root_bus = path[0].split(":")[0]
        aer = device.get("aer", {})
        gpus[f"0000:{path[-1]}"] = {
            "driver": device.get("driver"),
            "numa": spec["pci"].get("numa", {}).get(root_bus, 0),
            "link": device.get("link", model.get("link")),
            "max_link": model.get("link"),
            "aer": {severity: sum(counts.values()) for severity, counts in aer.items()},
            "vendor": model["vendor"], "device": model["device"], "name": model["name"],
        }
    return gpus


def _catalog_entry(models: dict[str, Any], name: str) -> dict[str, Any]:
    if name in models:
        return dict(models[name])
    for section in models.values():  # the catalog may group models in sections
        if isinstance(section, dict) and name in section:
            return dict(section[name])
    raise KeyError(name)


# --- fixture hosts ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def intel(fixture_inventory: Callable[[str], Inventory], tmp_path_factory: pytest.TempPathFactory) -> Exposition:
    return _metrics(fixture_inventory("intel-2s-8gpu"), tmp_path_factory.mktemp("root"))


def test_numa_capacity_of_the_hgx_host(intel: Exposition, fixture_spec: Callable[[str], dict[str, Any]]) -> None:
    spec = fixture_spec("intel-2s-8gpu")
    cpus_per_node = spec["cpu"]["sockets"] * spec["cpu"]["cores_per_socket"] * spec["cpu"]["threads_per_core"] // (
        spec["cpu"]["sockets"] * spec["numa"]["nodes_per_socket"])
    pools = spec["memory"]["hugepages"]["1G"]
    for node, node_kb in enumerate(spec["memory"]["node_kb"]):
        n = str(node)
        assert intel.value("nodeagent_numa_node_cpus", numa_node=n) == cpus_per_node
        assert intel.value("nodeagent_numa_node_isolated_cpus", numa_node=n) == 0
        assert intel.value("nodeagent_numa_node_memory_bytes", numa_node=n, state="total") == node_kb * 1024
        assert 0 < intel.value("nodeagent_numa_node_memory_bytes", numa_node=n, state="free") < node_kb * 1024
        assert intel.value("nodeagent_numa_hugepages", numa_node=n, size="1Gi", state="total") == pools["nr"][node]
        assert intel.value("nodeagent_numa_hugepages", numa_node=n, size="1Gi", state="free") == pools["free"][node]
        assert intel.value("nodeagent_numa_hugepages", numa_node=n, size="1Gi", state="surplus") == 0
        assert intel.value("nodeagent_numa_hugepages_bytes", numa_node=n, size="1Gi", state="total") == (
            pools["nr"][node] << 30)
        assert intel.value("nodeagent_numa_hugepages", numa_node=n, size="2Mi", state="total") == 0


def test_gpus_per_numa_node_and_driver(intel: Exposition, fixture_spec: Callable[[str], dict[str, Any]]) -> None:
    expected = Counter((str(g["numa"]), g["driver"]) for g in spec_gpus(fixture_spec("intel-2s-8gpu")).values())
    got = {(s.labels["numa_node"], s.labels["driver"]): s.value for s in intel.get("nodeagent_numa_gpus")}
    assert got == dict(expected)
    assert got[("0", "vfio-pci")] == 4 and got[("1", "nvidia")] == 4  # the spec's story, stated plainly


def test_gpu_sysfs_series_of_the_hgx_host(intel: Exposition, fixture_spec: Callable[[str], dict[str, Any]]) -> None:
    gpus = spec_gpus(fixture_spec("intel-2s-8gpu"))
    assert {s.labels["pci_address"] for s in intel.get("nodeagent_gpu_info")} == set(gpus)
    for address, gpu in gpus.items():
        (info,) = intel.get("nodeagent_gpu_info", pci_address=address)
        assert info.labels["vendor_id"] == gpu["vendor"] and info.labels["device_id"] == gpu["device"]
        assert info.labels["driver"] == gpu["driver"] and info.labels["numa_node"] == str(gpu["numa"])
        assert info.labels["model"] == gpu["name"] and info.labels["iommu_group"].isdigit()
        if gpu["link"] is None:  # a PCI (not PCIe) device has no link attributes
            assert intel.get("nodeagent_gpu_pcie_link_degraded", pci_address=address) == []
            continue
        speed, width = gpu["link"]
        assert intel.value("nodeagent_gpu_pcie_link_speed_gts", pci_address=address) == speed
        assert intel.value("nodeagent_gpu_pcie_link_width", pci_address=address) == width
        assert intel.value("nodeagent_gpu_pcie_link_max_speed_gts", pci_address=address) == gpu["max_link"][0]
        below_max = (speed, width) != tuple(gpu["max_link"])
        assert intel.value("nodeagent_gpu_pcie_link_degraded", pci_address=address) == float(below_max)
        for severity in ("correctable", "nonfatal", "fatal"):
            assert intel.value("nodeagent_gpu_aer_errors_total", pci_address=address, severity=severity) == (
                gpu["aer"].get(severity, 0))
    degraded = {s.labels["pci_address"] for s in intel.get("nodeagent_gpu_pcie_link_degraded") if s.value == 1}
    assert degraded == {"0000:cb:00.0"}
    assert intel.value("nodeagent_gpu_aer_errors_total", pci_address="0000:9b:00.0", severity="correctable") == 14
    ready = {s.labels["pci_address"] for s in intel.get("nodeagent_gpu_passthrough_ready") if s.value == 1}
    assert ready == {a for a, g in gpus.items() if g["driver"] == "vfio-pci"}
    for address in gpus:
        states = intel.get("nodeagent_gpu_power_state", pci_address=address)
        assert len(states) == 1 and states[0].value == 1 and states[0].labels["state"].startswith("D")


def test_node_facts_of_the_hgx_host(intel: Exposition, fixture_spec: Callable[[str], dict[str, Any]]) -> None:
    spec = fixture_spec("intel-2s-8gpu")
    (info,) = intel.get("nodeagent_info")
    assert info.labels["kernel"] == spec["kernel"]["release"]
    assert info.labels["cpu_model"] == spec["cpu"]["model_name"]
    assert info.labels["version"]
    assert intel.value("nodeagent_kvm_available") == 1
    assert intel.value("nodeagent_iommu_enabled") == float(spec["iommu"]["enabled"])
    assert intel.value("nodeagent_ksm_running") == float(spec["ksm"]["run"] == 1)
    assert intel.value("nodeagent_reboot_required") == 0
    assert intel.value("nodeagent_kubelet_restart_required") == 0


def test_checks_and_readiness_of_the_hgx_host(intel: Exposition) -> None:
    by_check: dict[str, list[float]] = {}
    for sample in intel.get("nodeagent_check_status"):
        by_check.setdefault(sample.labels["check"], []).append(sample.value)
    assert by_check, "no checks exported"
    for check, values in by_check.items():
        assert sorted(values) == [0, 0, 0, 1], check  # exactly one current status of PASS/WARN/FAIL/SKIP
    # the degraded link of cb:00.0 is a WARN
    assert intel.value("nodeagent_check_status", check="gpu-link-0000:cb:00.0", status="WARN") == 1
    # The class table applied to the spec: KVM; IOMMU on with four vfio GPUs but no 2Mi pages (128Gi needed);
    # 128 1Gi pages (64 needed); AVX-512F; KSM off; not RT; kubelet static CPU manager, memory manager None.
    ready = {s.labels["workload"]: s.value for s in intel.get("nodeagent_workload_ready")}
    assert ready == {"general": 1, "high-density": 0, "database": 1, "hpc": 0, "ai-training": 0, "vgpu": 0,
                     "realtime": 0}


def test_amd_nps4_per_node_2mi_pools(fixture_inventory: Callable[[str], Inventory],
                                      fixture_spec: Callable[[str], dict[str, Any]], tmp_path: Path) -> None:
    spec = fixture_spec("amd-nps4-consumer")
    exposition = _metrics(fixture_inventory("amd-nps4-consumer"), tmp_path)
    pools = spec["memory"]["hugepages"]["2M"]
    assert len(exposition.get("nodeagent_numa_node_cpus")) == len(spec["memory"]["node_kb"]) == 4
    for node in range(4):
        assert exposition.value("nodeagent_numa_hugepages", numa_node=str(node), size="2Mi", state="total") == (
            pools["nr"][node])
        assert exposition.value("nodeagent_numa_hugepages", numa_node=str(node), size="2Mi", state="free") == (
            pools["free"][node])
    assert exposition.value("nodeagent_ksm_running") == 1
    assert exposition.value("nodeagent_ksm_pages_sharing") == spec["ksm"]["pages_sharing"]
    assert exposition.value("nodeagent_workload_ready", workload="high-density") == 1


def test_minimal_host_without_gpus_or_kvm(fixture_inventory: Callable[[str], Inventory], tmp_path: Path) -> None:
    exposition = _metrics(fixture_inventory("minimal"), tmp_path)
    assert not any(name.startswith("nodeagent_gpu_") for name in exposition.names)
    assert exposition.get("nodeagent_numa_gpus") == []
    assert exposition.value("nodeagent_kvm_available") == 0
    assert exposition.value("nodeagent_workload_ready", workload="general") == 0
    assert {s.labels["collector"] for s in exposition.get("nodeagent_collector_up")} == {
        "capacity", "node", "checks", "gpu", "vgpu"}  # no live collectors under a fixture root


# --- hand-built inventories: unknowns, refresh ----------------------------------------------


def test_unknown_facts_are_absent_or_labelled_unknown(tmp_path: Path) -> None:
    inv = make_inventory(gpus=[make_gpu("0000:65:00.0", driver=None, numa_node=None, iommu_group=None,
                                        link=PcieLink(None, None, 16.0, 16), power_state=None, aer={})])
    inv = replace(inv, numa=[replace(inv.numa[0], memory_free_bytes=None)])
    exposition = _metrics(inv, tmp_path)
    (info,) = exposition.get("nodeagent_gpu_info")
    assert (info.labels["driver"], info.labels["numa_node"], info.labels["iommu_group"]) == ("none", "-1", "")
    assert exposition.value("nodeagent_numa_gpus", numa_node="-1", driver="none") == 1
    assert exposition.get("nodeagent_gpu_pcie_link_degraded") == []  # unknown is not "not degraded"
    assert exposition.get("nodeagent_gpu_pcie_link_speed_gts") == []
    assert exposition.value("nodeagent_gpu_pcie_link_max_width", pci_address="0000:65:00.0") == 16
    assert exposition.get("nodeagent_gpu_aer_errors_total") == []
    assert exposition.get("nodeagent_numa_node_memory_bytes", state="free") == []


def test_isolated_cpus_per_node_and_pending_reboot(tmp_path: Path) -> None:
    from tests.support.factories import make_cpu

    cpu = make_cpu(online=list(range(8)), logical_cpus=8, isolated=[2, 3, 6])
    inv = make_inventory(cpu=cpu, hugepages={"1Gi": pool("1Gi", 4, 1)})
    inv = replace(inv, numa=[replace(inv.numa[0], id=0, cpus=[0, 1, 2, 3]),
                             replace(inv.numa[0], id=1, cpus=[4, 5, 6, 7])],
                  prep=replace(inv.prep, reboot_required=True, kubelet_restart_required=True))
    exposition = _metrics(inv, tmp_path)
    assert exposition.value("nodeagent_numa_node_isolated_cpus", numa_node="0") == 2
    assert exposition.value("nodeagent_numa_node_isolated_cpus", numa_node="1") == 1
    assert exposition.value("nodeagent_reboot_required") == 1
    assert exposition.value("nodeagent_kubelet_restart_required") == 1


def test_a_refreshed_inventory_is_served_and_checks_run_once_per_inventory(tmp_path: Path, mocker: Any) -> None:
    import nodeagent.metrics.node as node_module

    first = make_inventory()
    second = replace(first, prep=replace(first.prep, reboot_required=True))
    current = [first]
    spy = mocker.spy(node_module, "run_checks")
    node_metrics = build_metrics(lambda: current[0], Host(str(tmp_path)), OFFLINE)
    assert scrape(node_metrics).value("nodeagent_reboot_required") == 0
    scrape(node_metrics)
    assert spy.call_count == 1  # same Inventory object: checks not re-run
    current[0] = second  # the daemon refreshed its inventory
    assert scrape(node_metrics).value("nodeagent_reboot_required") == 1
    assert spy.call_count == 2


def test_a_failing_inventory_collector_leaves_the_others(tmp_path: Path, mocker: Any) -> None:
    mocker.patch("nodeagent.metrics.node.run_checks", side_effect=KeyError("new check with a bug"))
    exposition = _metrics(make_inventory(), tmp_path)
    assert exposition.value("nodeagent_collector_up", collector="checks") == 0
    assert exposition.get("nodeagent_check_status") == []
    assert exposition.value("nodeagent_collector_up", collector="node") == 1
    assert exposition.value("nodeagent_kvm_available") == 1
