"""Discovery: one module per source, each a function of the Host; together they build the Inventory."""

from __future__ import annotations

import os

from nodeagent.discover.cpu import discover_cpu
from nodeagent.discover.iommu import discover_iommu
from nodeagent.discover.kernel import discover_kernel
from nodeagent.discover.ksm import discover_ksm
from nodeagent.discover.kubelet import discover_kubelet
from nodeagent.discover.kvm import discover_kvm
from nodeagent.discover.memory import discover_memory
from nodeagent.discover.net import discover_nics
from nodeagent.discover.numa import discover_numa
from nodeagent.discover.nvlink import derive_fabrics
from nodeagent.discover.pci import discover_pci
from nodeagent.discover.prep_state import discover_prep_state
from nodeagent.discover.vgpu import discover_vgpu
from nodeagent.host import Host, HostRecord
from nodeagent.inventory import Inventory


def discover(host: Host, *, netlink: bool = False, record: HostRecord | None = None) -> Inventory:
    """Read the node through ``host`` into an Inventory. Missing files are facts, never errors.

    ``netlink``: ask the kernel for NIC link state over netlink (live host only; see discover.net).
    ``record``: the record this discovery fills (files read, a trace for ``capture``); a fresh one
    by default. Its warnings and skipped sources are the Inventory's. Raises ``HostError`` when
    the root holds neither ``sys/`` nor ``proc/`` (an empty or wrong ``--root``).
    """
    host.check_tree()
    with host.recording(record) as run:
        return _discover(host, run, netlink=netlink)


def _discover(host: Host, run: HostRecord, *, netlink: bool) -> Inventory:
    host.forget_paths()
    kernel = discover_kernel(host)
    cpu = discover_cpu(host, kernel.cmdline)
    memory = discover_memory(host)
    iommu = discover_iommu(host, kernel.cmdline, cpu.vendor)
    gpus, nvswitches, pci_devices = discover_pci(host, iommu.enabled)
    gpus, fabrics = derive_fabrics(gpus, nvswitches)
    kubelet = discover_kubelet(host)
    return Inventory(
        hostname=host.read_str("/proc/sys/kernel/hostname"),
        root=host.root,
        cpu=cpu,
        numa=discover_numa(host, cpu, memory),
        memory=memory,
        gpus=gpus,
        nvswitches=[s.address for s in nvswitches],
        nics=discover_nics(host, netlink=netlink),
        kvm=discover_kvm(host),
        iommu=iommu,
        ksm=discover_ksm(host),
        kernel=kernel,
        kubelet=kubelet,
        prep=discover_prep_state(host, kernel.cmdline, kubelet_started_at=kubelet.started_at,
                                 kubelet_running=kubelet.running),
        pci_devices=pci_devices,
        warnings=[str(w) for w in run.warnings],
        skipped=dict(run.skipped),
        unreadable=sorted(run.denied),
        privileged=os.geteuid() == 0,
        nvswitch_devices=nvswitches,
        nvlink_fabrics=fabrics,
        vgpu=discover_vgpu(host, gpus),
    )
