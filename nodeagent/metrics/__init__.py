"""Prometheus metrics: the only package that imports prometheus_client (through :mod:`.prom`).

:func:`~nodeagent.metrics.build.build_metrics` assembles the standard collector set for a node:

==========  ================================================  ===============================
collector   series                                            read at scrape time
==========  ================================================  ===============================
capacity    nodeagent_numa_*                                  the current Inventory
node        nodeagent_info, kvm/iommu/ksm/reboot facts        the current Inventory
checks      nodeagent_check_status, nodeagent_workload_*      the current Inventory
gpu         nodeagent_gpu_* from sysfs                        the current Inventory
nvml        nodeagent_gpu_* from NVML                         NVML (live host only)
vm          nodeagent_vm_*, nodeagent_gpu_assigned            libvirt, /proc (live host only)
==========  ================================================  ===============================

plus ``nodeagent_collector_up`` / ``nodeagent_collector_duration_seconds`` for each, from the
:class:`~nodeagent.metrics.base.Supervisor`. Inventory-derived series come from an inventory
provider (a callable the daemon keeps current), so a scrape never re-reads sysfs.
"""

from __future__ import annotations

from nodeagent.metrics.base import CollectorStatus
from nodeagent.metrics.build import (
    MetricsOptions,
    NodeMetrics,
    build_metrics,
    system_libvirt_source,
    wants_openmetrics_only,
)
from nodeagent.metrics.server import MetricsServer, Request, Response, parse_listen

__all__ = [
    "CollectorStatus", "MetricsOptions", "MetricsServer", "NodeMetrics", "Request", "Response",
    "build_metrics", "parse_listen", "system_libvirt_source", "wants_openmetrics_only",
]
