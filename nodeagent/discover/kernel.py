"""Kernel facts: release, PREEMPT_RT, command line, cgroups, NUMA balancing, loaded modules."""

from __future__ import annotations

import re

from nodeagent.host import Host
from nodeagent.inventory import KernelInfo

# Modules whose presence nodeagent reports: virtualization, vfio, and the GPU host drivers.
MODULES_OF_INTEREST = frozenset({
    "kvm", "kvm_intel", "kvm_amd", "vhost_net", "tun", "vfio", "vfio_pci", "vfio_pci_core",
    "vfio_iommu_type1", "nvidia", "nvidia_uvm", "nvidia_drm", "nouveau", "amdgpu", "i915", "xe",
    "mlx5_core", "mlx5_vfio_pci", "nvgrace_gpu_vfio_pci", "ksm",
})

_PREEMPT = re.compile(r"\b(PREEMPT_RT|PREEMPT_DYNAMIC|PREEMPT RT|PREEMPT)\b")


def preempt_model(version: str | None) -> str | None:
    """The preemption model as ``/proc/version`` announces it (``… SMP PREEMPT_RT …``)."""
    if not version:
        return None
    match = _PREEMPT.search(version)
    if not match:
        return None
    return "PREEMPT_RT" if match.group(1) in ("PREEMPT_RT", "PREEMPT RT") else match.group(1)


def discover_kernel(host: Host) -> KernelInfo:
    version = host.read_str("/proc/version")
    release = host.read_str("/proc/sys/kernel/osrelease")
    if release is None and version:
        parts = version.split()
        release = parts[2] if len(parts) > 2 else None
    model = preempt_model(version)
    # /sys/kernel/realtime exists (and reads 1) only on PREEMPT_RT kernels.
    realtime = host.read_int("/sys/kernel/realtime") == 1 or model == "PREEMPT_RT"
    return KernelInfo(
        release=release,
        version=version,
        realtime=realtime,
        preempt_model=model,
        cmdline=host.read_str("/proc/cmdline") or "",
        cgroup_version=_cgroup_version(host),
        cgroup_controllers=_cgroup_controllers(host),
        numa_balancing=host.read_int("/proc/sys/kernel/numa_balancing"),
        modules=_loaded_modules(host),
        sched_rt_runtime_us=host.read_int("/proc/sys/kernel/sched_rt_runtime_us"),
    )


def _cgroup_version(host: Host) -> int | None:
    if host.exists("/sys/fs/cgroup/cgroup.controllers"):
        return 2
    if host.exists("/proc/cgroups") or host.is_dir("/sys/fs/cgroup"):
        return 1
    return None


def _cgroup_controllers(host: Host) -> list[str]:
    """Controllers available to containers: the v2 root's list, else v1's enabled ones."""
    v2 = host.read_text("/sys/fs/cgroup/cgroup.controllers")
    if v2 is not None:
        return sorted(v2.split())
    v1 = host.read_text("/proc/cgroups") or ""
    enabled = []
    for line in v1.splitlines():
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) >= 4 and fields[3] == "1":
            enabled.append(fields[0])
    return sorted(enabled)


def _loaded_modules(host: Host) -> list[str]:
    """Modules of interest that are loaded (/proc/modules) or built in (/sys/module/<name>)."""
    names = {line.split(" ", 1)[0] for line in (host.read_text("/proc/modules") or "").splitlines() if line}
    names.update(host.listdir("/sys/module"))
    return sorted(names & MODULES_OF_INTEREST)
