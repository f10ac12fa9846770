"""Per-VM series that join KubeVirt's: ``namespace``/``name`` on every per-VM series, and
``--vm-metrics=complement`` leaving out what virt-handler already exports for KubeVirt's VMs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeagent.cli import main
from nodeagent.metrics.exposition import render_text
from nodeagent.metrics.vm import FAMILIES, KUBEVIRT_OVERLAP, VmCollector
from nodeagent.sources.libvirt_source import DomainXml
from tests.metrics.stubs import StubLibvirt, domain
from tests.support.exposition import Exposition
from tests.support.factories import make_inventory

PER_VM = {"nodeagent_vm_state", "nodeagent_vm_vcpus", "nodeagent_vm_cpu_seconds_total",
          "nodeagent_vm_vcpu_seconds_total", "nodeagent_vm_vcpu_wait_seconds_total", "nodeagent_vm_memory_bytes",
          "nodeagent_vm_block_bytes_total", "nodeagent_vm_network_bytes_total", "nodeagent_vm_hugepages_backed",
          "nodeagent_vm_vcpus_pinned"}


def _scrape(vm_metrics: str) -> Exposition:
    inv = make_inventory()
    kubevirt = DomainXml(vcpus=2, vcpu_cpuset=None, vcpupins={0: [0]}, hugepages=True, hostdev_pci=[],
                         kubevirt=True)
    plain = DomainXml(vcpus=2, vcpu_cpuset=None, vcpupins={}, hugepages=False, hostdev_pci=[], kubevirt=False)
    samples = [domain("team-a_trainer-0", "u-1", xml=kubevirt), domain("web_01", "u-2", xml=plain)]
    collector = VmCollector(lambda: [StubLibvirt(samples)], lambda: inv,  # type: ignore[list-item]
                            vm_metrics=vm_metrics)
    return Exposition(render_text(list(collector.collect())).decode())


def test_every_per_vm_series_names_its_kubevirt_namespace_and_name() -> None:
    exposition = _scrape("full")
    for series in PER_VM:
        kubevirt = exposition.get(series, domain="team-a_trainer-0")
        assert kubevirt, series
        assert all((s.labels["namespace"], s.labels["name"]) == ("team-a", "trainer-0") for s in kubevirt), series
        # not KubeVirt's (its XML has no KubeVirt metadata): no namespace, the domain's own name
        plain = exposition.get(series, domain="web_01")
        assert plain and all((s.labels["namespace"], s.labels["name"]) == ("", "web_01") for s in plain), series


def test_complement_leaves_out_what_virt_handler_exports_for_kubevirt_vms_only() -> None:
    full, complement = _scrape("full"), _scrape("complement")
    overlapping = {FAMILIES[key][0] + ("_total" if FAMILIES[key][2] == "counter" else "")
                   for key in KUBEVIRT_OVERLAP}
    assert "nodeagent_vm_vcpu_wait_seconds_total" in overlapping and "nodeagent_vm_memory_bytes" in overlapping
    for series in overlapping:
        assert full.get(series, domain="team-a_trainer-0"), series
        assert complement.get(series, domain="team-a_trainer-0") == [], series
        # virt-handler knows nothing of a domain KubeVirt did not start: it keeps everything
        assert complement.get(series, domain="web_01") == full.get(series, domain="web_01"), series
    for kept in ("nodeagent_vm_info", "nodeagent_vm_state", "nodeagent_vm_vcpus", "nodeagent_vm_hugepages_backed",
                 "nodeagent_vm_vcpus_pinned"):
        assert complement.get(kept, domain="team-a_trainer-0") == full.get(kept, domain="team-a_trainer-0"), kept
    assert complement.value("nodeagent_vm_vcpus_pinned", domain="team-a_trainer-0") == 1


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="vm_metrics"):
        VmCollector(lambda: [], make_inventory, vm_metrics="some")


def test_the_cli_option_and_its_environment_variable(host_trees: Callable[[str], Path]) -> None:
    root = str(host_trees("minimal"))
    bad = CliRunner().invoke(main, ["--root", root, "metrics", "--vm-metrics", "some"])
    assert bad.exit_code == 2 and "--vm-metrics" in bad.output and "complement" in bad.output
    bad_env = CliRunner().invoke(main, ["--root", root, "metrics"], env={"NODEAGENT_VM_METRICS": "some"})
    assert bad_env.exit_code == 2 and "--vm-metrics" in bad_env.output
    good = CliRunner().invoke(main, ["--root", root, "metrics"], env={"NODEAGENT_VM_METRICS": "complement"})
    assert good.exit_code == 0, good.output
    serve = CliRunner().invoke(main, ["--root", root, "serve", "--help"])
    assert "--vm-metrics [full|complement]" in " ".join(serve.output.split())
