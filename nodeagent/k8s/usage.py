"""What running VMs and pods hold on this host, per NUMA zone: the input of NRT ``available``.

Two sources, as nfd-topology-updater has one:

* **The kubelet's podresources API** (:mod:`nodeagent.k8s.podresources`), when its socket exists:
  the CPUs, devices and memory the kubelet assigned to each container, and the pods that hold
  them (the ``nodeTopologyPodsFingerprint`` is computed over those pods).
* **Live host facts** otherwise (a host without a kubelet socket, or a libvirt host): a GPU is held
  when a process has its ``/dev/vfio/<group>`` open (QEMU opens the group of every assigned
  device; libvirt ``<hostdev>`` and KubeVirt alike); a CPU is exclusively pinned when a QEMU vCPU
  thread (``CPU n/KVM``) may run on that CPU alone (libvirt ``vcpupin``, KubeVirt
  ``dedicatedCpuPlacement``); free hugepages and free memory come from the NUMA node's own
  counters, which the Inventory already holds.

Memory free moves all the time; it is rounded down to :data:`MEMORY_GRANULE` so that page-cache
noise does not rewrite the NodeResourceTopology on every pass (the publisher's zero-writes rule).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.sources.qemu_process import vcpu_threads

MEMORY_GRANULE = 2**30  # bytes: free memory is published in whole GiB

_VFIO_GROUP = re.compile(r"^/dev/vfio/(\d+)$")
_QEMU_COMM_PREFIX = "qemu"

SOURCE_HOST = "host"
SOURCE_PODRESOURCES = "podresources"


@dataclass(frozen=True)
class ZoneUsage:
    """What is taken in one NUMA zone (podresources: allocated; host: held/pinned)."""

    cpus: frozenset[int] = frozenset()
    devices: Counter[str] = field(default_factory=Counter)  # resource name → count (podresources)
    memory_bytes: dict[str, int] = field(default_factory=dict)  # "memory" / "hugepages-1Gi" → bytes


@dataclass(frozen=True)
class TopologyUsage:
    """The taken share of the node, and where it was learnt.

    ``held_gpus``: PCI addresses of GPUs a running VM holds (host source). ``pinned_cpus``: CPUs
    some VM or container owns exclusively. ``zones``: per-zone allocations (podresources source).
    ``pods``: the (namespace, name) pairs the kubelet reports, for the fingerprint; None when the
    source cannot name pods (no fingerprint is published then). ``allocatable_cpus``: the CPUs the
    kubelet may assign (podresources ``GetAllocatableResources``); None: not known here.
    """

    source: str = SOURCE_HOST
    held_gpus: frozenset[str] = frozenset()
    pinned_cpus: frozenset[int] = frozenset()
    zones: dict[int, ZoneUsage] = field(default_factory=dict)
    pods: tuple[tuple[str, str], ...] | None = None
    allocatable_cpus: frozenset[int] | None = None


def vfio_groups_in_use(host: Host) -> set[int]:
    """IOMMU groups whose ``/dev/vfio/<group>`` some process holds open (``/proc/<pid>/fd``)."""
    groups: set[int] = set()
    for pid in host.listdir("/proc"):
        if not pid.isdigit():
            continue
        for fd in host.listdir(f"/proc/{pid}/fd"):
            match = _VFIO_GROUP.match(host.readlink(f"/proc/{pid}/fd/{fd}") or "")
            if match:
                groups.add(int(match.group(1)))
    return groups


def exclusively_pinned_cpus(host: Host) -> set[int]:
    """CPUs that a QEMU vCPU thread is pinned to alone."""
    pinned: set[int] = set()
    for pid in host.listdir("/proc"):
        if not pid.isdigit():
            continue
        comm = host.read_str(f"/proc/{pid}/comm")
        if not comm or not comm.startswith(_QEMU_COMM_PREFIX):
            continue
        for thread in vcpu_threads(host, int(pid)):
            if len(thread.allowed_cpus) == 1:
                pinned.add(thread.allowed_cpus[0])
    return pinned


def host_usage(host: Host, inv: Inventory) -> TopologyUsage:
    """What running VMs hold, from ``/proc`` (see the module docstring)."""
    groups = vfio_groups_in_use(host)
    held = frozenset(g.address for g in inv.gpus if g.iommu_group is not None and g.iommu_group in groups)
    return TopologyUsage(SOURCE_HOST, held_gpus=held, pinned_cpus=frozenset(exclusively_pinned_cpus(host)))

