"""Node facts from the current Inventory, and the results of the host checks and workload readiness.

Two collectors, so that a bug in a check (the checks grow with every release) can only take the
``checks`` series down, never the basic node facts that alerts depend on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from nodeagent import __version__
from nodeagent.checks import STATUSES, run_checks
from nodeagent.inventory import Inventory
from nodeagent.metrics.base import InventoryCollector, InventoryProvider
from nodeagent.metrics.prom import GaugeMetricFamily, Metric
from nodeagent.workloads import WorkloadTable, default_table

WorkloadsProvider = Callable[[], WorkloadTable]
"""Returns the workload classes in force; the daemon changes them with the node's profile."""

# When one check id shows up twice, the worse status wins (the exposition needs unique series).
_SEVERITY = {"FAIL": 3, "WARN": 2, "PASS": 1, "SKIP": 0}


def _flag(name: str, documentation: str, value: bool | None) -> Iterator[GaugeMetricFamily]:
    if value is not None:
        yield GaugeMetricFamily(name, documentation, value=1.0 if value else 0.0)


class NodeFactsCollector(InventoryCollector):
    name = "node"

    def families(self, inv: Inventory) -> Iterator[Metric]:
        info = GaugeMetricFamily("nodeagent_info", "nodeagent's version and the node's kernel and CPU model.",
                                 labels=["version", "kernel", "cpu_model"])
        info.add_metric([__version__, inv.kernel.release or "", inv.cpu.model_name or ""], 1.0)
        yield info
        yield from _flag("nodeagent_kvm_available", "1 when /dev/kvm exists and KVM can run guests.",
                         inv.kvm.available)
        yield from _flag("nodeagent_kvm_nested", "1 when the KVM module allows nested virtualization.",
                         inv.kvm.nested)
        yield from _flag("nodeagent_iommu_enabled", "1 when the IOMMU is on (IOMMU groups exist).",
                         inv.iommu.enabled)
        yield from _flag("nodeagent_kernel_realtime", "1 when the kernel is PREEMPT_RT.", inv.kernel.realtime)
        # A kernel without KSM is a host where KSM is not running; only an unreadable run file is unknown.
        ksm_running = inv.ksm.running if inv.ksm.run is not None else (False if not inv.ksm.available else None)
        yield from _flag("nodeagent_ksm_running", "1 when KSM is merging pages (/sys/kernel/mm/ksm/run = 1).",
                         ksm_running)
        if inv.ksm.available:
            for name, value, doc in (
                ("nodeagent_ksm_pages_sharing", inv.ksm.pages_sharing, "Pages KSM deduplicated (saved memory)."),
                ("nodeagent_ksm_pages_shared", inv.ksm.pages_shared, "Shared pages KSM keeps for the merged ones."),
            ):
                if value is not None:
                    yield GaugeMetricFamily(name, doc, value=value)
        yield from _flag("nodeagent_reboot_required",
                         "1 when changes nodeagent applied take effect only after a reboot.", inv.prep.reboot_required)
        yield from _flag("nodeagent_kubelet_restart_required",
                         "1 when changes nodeagent applied take effect only after a kubelet restart.",
                         inv.prep.kubelet_restart_required)
        yield GaugeMetricFamily("nodeagent_host_warnings",
                                "Host files discovery could not understand (see 'nodeagent inspect').",
                                value=len(inv.warnings))


class ChecksCollector(InventoryCollector):
    """``nodeagent_check_status``, ``nodeagent_workload_ready`` and ``nodeagent_workload_requirement_met``,
    computed once per Inventory and table.

    ``workloads`` returns the workload classes in force (the daemon's change with the node's profile);
    None: the default classes.
    """

    name = "checks"

    def __init__(self, inventory: InventoryProvider, workloads: WorkloadsProvider | None = None) -> None:
        super().__init__(inventory)
        self._workloads = workloads or default_table
        self._table = self._workloads()

    def collect(self) -> list[Metric]:
        table = self._workloads()
        if table is not self._table:
            with self._build_lock:
                self._table, self._built_for = table, None  # rebuilt for the new classes
        return super().collect()

    def families(self, inv: Inventory) -> Iterator[Metric]:
        results, ready = run_checks(inv), self._table.readiness(inv)
        worst: dict[str, str] = {}
        for result in results:
            if _SEVERITY.get(result.status, 0) >= _SEVERITY.get(worst.get(result.id, "SKIP"), 0):
                worst[result.id] = result.status
        status = GaugeMetricFamily("nodeagent_check_status",
                                   "Host check results: 1 for the check's current status, 0 for the others.",
                                   labels=["check", "status"])
        for check_id, current in sorted(worst.items()):
            for candidate in STATUSES:
                status.add_metric([check_id, candidate], 1.0 if candidate == current else 0.0)
        yield status
        workload = GaugeMetricFamily("nodeagent_workload_ready",
                                     "1 when the host half of the workload's VM recipe is in place.",
                                     labels=["workload"])
        for name, state in ready.items():
            workload.add_metric([name], 1.0 if state.ready else 0.0)
        yield workload
        met = GaugeMetricFamily("nodeagent_workload_requirement_met",
                                "1 when the host meets this requirement of the workload class, 0 when it "
                                "blocks the class (the reasons: 'nodeagent check --for WORKLOAD').",
                                labels=["workload", "requirement"])
        for cls in self._table.classes:
            blocked = ready[cls.name].blocked_by
            for requirement in cls.requirements:
                met.add_metric([cls.name, requirement.kind], 0.0 if requirement.kind in blocked else 1.0)
        yield met
