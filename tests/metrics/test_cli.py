"""`nodeagent metrics`: one exposition of every collector, exit 0."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeagent.cli import main
from tests.support.exposition import Exposition


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_metrics_of_a_fixture_host(host_trees: Callable[[str], Path]) -> None:
    code, output = _run("--root", str(host_trees("intel-2s-8gpu")), "metrics")
    assert code == 0
    exposition = Exposition(output)
    assert {s.labels["numa_node"] for s in exposition.get("nodeagent_numa_node_cpus")} == {"0", "1"}
    assert len(exposition.get("nodeagent_gpu_info")) == 9  # 8 H100s and the BMC's VGA
    # live-only sources are not read under a fixture root
    assert {s.labels["collector"] for s in exposition.get("nodeagent_collector_up")} == {
        "capacity", "node", "checks", "gpu", "vgpu"}
    assert exposition.get("process_cpu_seconds_total")


def test_openmetrics_output(host_trees: Callable[[str], Path]) -> None:
    code, output = _run("--root", str(host_trees("minimal")), "metrics", "--openmetrics")
    assert code == 0 and output.endswith("# EOF\n")
    assert "nodeagent_kvm_available 0.0" in output


def test_live_root_mounted_elsewhere_without_a_libvirt_daemon(host_trees: Callable[[str], Path]) -> None:
    """A DaemonSet's view: --root /host --live, and no libvirt socket under it (absent is not down)."""
    code, output = _run("--root", str(host_trees("minimal")), "--live", "metrics", "--no-nvml")
    assert code == 0
    exposition = Exposition(output)
    assert exposition.value("nodeagent_collector_up", collector="vm") == 1
    assert exposition.get("nodeagent_vm_info") == []


def test_an_unreachable_libvirt_is_reported_not_fatal(host_trees: Callable[[str], Path], tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    code, output = _run("--root", str(host_trees("minimal")), "--live", "metrics", "--no-nvml", "--no-kubevirt",
                        "--libvirt-uri", f"qemu+unix:///system?socket={tmp_path}/gone")
    assert code == 0
    exposition = Exposition(output)
    assert exposition.value("nodeagent_collector_up", collector="vm") == 0
    assert exposition.value("nodeagent_collector_up", collector="capacity") == 1


def test_no_libvirt_means_no_vm_collector(host_trees: Callable[[str], Path]) -> None:
    code, output = _run("--root", str(host_trees("minimal")), "--live", "metrics", "--no-nvml", "--no-libvirt")
    assert code == 0
    assert 'collector="vm"' not in output
