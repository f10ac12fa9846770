"""Host checks in the spirit of ``virt-host-validate``, and a workload's readiness as one more check.

Checks are pure functions of the Inventory. Each has a stable ``id`` (the metric label), the title
virt-host-validate would print, a status, a one-line reason and, unless it passed, the fix. Readiness
itself (the table of workload classes) is :mod:`nodeagent.workloads`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodeagent.discover.pci import group_strangers, slot
from nodeagent.inventory import Gpu, Inventory, Plain
from nodeagent.parse import format_cpulist

if TYPE_CHECKING:
    from nodeagent.workloads import Readiness

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
STATUSES = (PASS, WARN, FAIL, SKIP)
__all__ = ["STATUSES", "CheckResult", "readiness_check", "run_checks"]


@dataclass(frozen=True)
class CheckResult(Plain):
    id: str  # stable machine name, e.g. "kvm-device", used as the metric label
    title: str  # what was checked, as virt-host-validate words it
    status: str  # PASS | WARN | FAIL | SKIP
    reason: str  # one line: why this status
    fix: str | None = None  # one line: what to do about it (None on PASS)


def _cpus(cpus: Iterable[int]) -> str:
    return format_cpulist(cpus) or "none"


# --- virt-host-validate's checks -------------------------------------------------------------


# Architectures whose CPUs carry no "can virtualize" flag: the kernel creates /dev/kvm only when
# KVM initialised on them (arm64 booted at EL2, POWER in hypervisor mode, RISC-V with the H extension).
FLAGLESS_ARCHITECTURES = ("aarch64", "ppc64le", "riscv64", "loongarch64")


def check_hardware_virtualization(inv: Inventory) -> list[CheckResult]:
    title = "Checking for hardware virtualization"
    kvm, arch = inv.kvm, inv.cpu.architecture
    if inv.cpu.virtualization:
        return [CheckResult("hardware-virtualization", title, PASS, f"CPU flag '{inv.cpu.virtualization}' present")]
    if arch in FLAGLESS_ARCHITECTURES and kvm.available:
        return [CheckResult("hardware-virtualization", title, PASS,
                            f"{arch} has no CPU flag for it; /dev/kvm exists, which KVM creates only when the "
                            "CPU can run guests")]
    if kvm.available and kvm.api_version == 12:
        return [CheckResult(
            "hardware-virtualization", title, WARN,
            f"no vmx/svm CPU flag, but /dev/kvm answers KVM API 12 (module {kvm.module or 'unknown'}): "
            "a nested or paravirtualized KVM backend",
            "expect lower VM performance than on bare metal; host-passthrough CPU models may fail")]
    if kvm.available and not kvm.accessible:
        return [CheckResult(
            "hardware-virtualization", title, WARN,
            "no vmx/svm CPU flag, and /dev/kvm is not readable by this user, so it cannot be asked",
            "run the check as root (or as a member of the kvm group) to tell")]
    if arch in FLAGLESS_ARCHITECTURES:
        return [CheckResult("hardware-virtualization", title, FAIL,
                            f"/dev/kvm is missing: KVM did not initialise on this {arch} host",
                            "boot the kernel with the CPU's virtualization mode available (EL2 on arm64, "
                            "hypervisor mode on POWER) and load the kvm module")]
    return [CheckResult(
        "hardware-virtualization", title, FAIL,
        "HW virtualization CPU features (vmx/svm) not found; only emulated CPUs are available",
        "enable VT-x/AMD-V in the firmware setup and load kvm_intel or kvm_amd")]


def check_kvm_device(inv: Inventory) -> list[CheckResult]:
    kvm = inv.kvm
    if not kvm.available:
        return [CheckResult("kvm-device", "Checking if device /dev/kvm exists", FAIL, "/dev/kvm is missing",
                            "load the kvm module (modprobe kvm_intel or kvm_amd)")]
    results = [CheckResult("kvm-device", "Checking if device /dev/kvm exists", PASS,
                           "present" if kvm.device == "char" else "present (fixture stand-in, not a device)")]
    if kvm.accessible:
        results.append(CheckResult("kvm-accessible", "Checking if device /dev/kvm is accessible", PASS,
                                   "readable and writable by this process"))
    elif inv.privileged is False:
        results.append(CheckResult("kvm-accessible", "Checking if device /dev/kvm is accessible", WARN,
                                   "/dev/kvm is not readable by this user (it is present; the check ran unprivileged)",
                                   "run as root, or add this user to the device's group (kvm)"))
    else:
        results.append(CheckResult("kvm-accessible", "Checking if device /dev/kvm is accessible", FAIL,
                                   "this process cannot open /dev/kvm read-write",
                                   "check the device's permissions (group kvm) or run privileged"))
    title = "Checking the KVM API version"
    if kvm.api_version is None and not kvm.accessible:
        results.append(CheckResult("kvm-api", title, SKIP, "/dev/kvm is not readable by this user: not asked"))
    elif kvm.api_version is None:
        results.append(CheckResult("kvm-api", title, SKIP, "the KVM ioctl is live-only (not a device under this root)"))
    elif kvm.api_version == 12:
        limits = f", up to {kvm.max_vcpus} vCPUs" if kvm.max_vcpus else ""
        results.append(CheckResult("kvm-api", title, PASS, f"KVM_GET_API_VERSION = 12{limits}"))
    else:
        results.append(CheckResult("kvm-api", title, FAIL, f"KVM_GET_API_VERSION = {kvm.api_version}, expected 12",
                                   "run a kernel whose KVM speaks the stable API (12)"))
    return results


def check_vhost_and_tun(inv: Inventory) -> list[CheckResult]:
    vhost = (CheckResult("vhost-net", "Checking if device /dev/vhost-net exists", PASS, "present")
             if inv.kvm.vhost_net else
             CheckResult("vhost-net", "Checking if device /dev/vhost-net exists", WARN, "missing",
                         "load the 'vhost_net' module to improve performance of virtio networking"))
    tun = (CheckResult("tun", "Checking if device /dev/net/tun exists", PASS, "present")
           if inv.kvm.tun else
           CheckResult("tun", "Checking if device /dev/net/tun exists", FAIL, "missing",
                       "load the 'tun' module; VM networking needs it"))
    return [vhost, tun]


CGROUP_V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "blkio")
CGROUP_V2_CONTROLLERS = ("cpu", "cpuset", "memory", "io", "pids")


def check_cgroups(inv: Inventory) -> list[CheckResult]:
    if inv.kernel.cgroup_version is None:
        return [CheckResult("cgroups", "Checking for cgroup support", SKIP, "no cgroup filesystem under this root")]
    wanted = CGROUP_V2_CONTROLLERS if inv.kernel.cgroup_version == 2 else CGROUP_V1_CONTROLLERS
    results = []
    for name in wanted:
        title = f"Checking for cgroup '{name}' controller support"
        if name in inv.kernel.cgroup_controllers:
            results.append(CheckResult(f"cgroup-{name}", title, PASS, f"enabled (cgroup v{inv.kernel.cgroup_version})"))
        else:
            results.append(CheckResult(f"cgroup-{name}", title, WARN, "controller not enabled",
                                       f"enable the '{name}' controller (kernel config or cgroup_enable=)"))
    return results


def check_iommu(inv: Inventory) -> list[CheckResult]:
    iommu = inv.iommu
    expected = {"GenuineIntel": "DMAR", "AuthenticAMD": "IVRS"}.get(inv.cpu.vendor or "") or (
        "IORT" if inv.cpu.architecture == "aarch64" else None)
    title = "Checking for device assignment IOMMU support"
    if iommu.firmware_table:
        firmware = CheckResult("iommu-firmware", title, PASS, f"ACPI {iommu.firmware_table} table present")
    elif inv.cpu.architecture in ("ppc64le", "s390x") and iommu.enabled:
        firmware = CheckResult("iommu-firmware", title, PASS,
                               f"{inv.cpu.architecture} platform IOMMU (no ACPI table on this architecture)")
    elif expected:
        firmware = CheckResult("iommu-firmware", title, WARN,
                               f"no ACPI {expected} table found: IOMMU disabled in firmware or unsupported",
                               "enable the SMMU (IOMMU) in the firmware setup" if expected == "IORT" else
                               "enable VT-d / AMD-Vi (IOMMU) in the firmware setup")
    else:
        firmware = CheckResult("iommu-firmware", title, WARN, "unknown if this platform has IOMMU support")
    title = "Checking if IOMMU is enabled by kernel"
    if iommu.enabled:
        mode = " (passthrough mode, iommu=pt)" if iommu.passthrough_mode else ""
        kernel = CheckResult("iommu-kernel", title, PASS, f"{iommu.groups} IOMMU groups{mode}")
    else:
        arch = inv.cpu.architecture
        if arch in (None, "x86_64"):
            argument = iommu.enable_argument or "intel_iommu=on or amd_iommu=on"
            fix = f"add {argument} iommu=pt to the kernel command line (profile spec.kernel.iommu: true)"
        else:  # arm64's SMMU, POWER's and s390's IOMMUs are on whenever the platform has them
            fix = (f"the {arch} kernel enables the platform IOMMU by itself: check that the firmware exposes it "
                   "(the SMMU in the IORT table on arm64) and that the kernel has its driver")
        kernel = CheckResult("iommu-kernel", title, WARN,
                             "IOMMU appears to be disabled in the kernel (no IOMMU groups)", fix)
    return [firmware, kernel]


# --- nodeagent's own checks ------------------------------------------------------------------


def check_nested(inv: Inventory) -> list[CheckResult]:
    title = "Checking for nested KVM"
    if inv.kvm.nested is None:
        detail = (f"module {inv.kvm.module} has no 'nested' parameter" if inv.kvm.module
                  else "no KVM module is loaded, so there is no 'nested' parameter to read")
        return [CheckResult("kvm-nested", title, SKIP, detail)]
    if inv.kvm.nested:
        return [CheckResult("kvm-nested", title, PASS, f"{inv.kvm.module} nested=1")]
    return [CheckResult("kvm-nested", title, WARN, f"{inv.kvm.module} nested=0: guests cannot run hypervisors",
                        f"options {inv.kvm.module} nested=1 in /etc/modprobe.d/, then reload the module")]


def check_1gi_pages(inv: Inventory) -> list[CheckResult]:
    title = "Checking for 1Gi hugepage support"
    if inv.cpu.has_flag("pdpe1gb"):
        return [CheckResult("hugepages-1gi-support", title, PASS, "CPU flag 'pdpe1gb' present")]
    if "1Gi" in inv.memory.hugepages:  # arm64 and POWER: a page-table level size, no CPU flag
        return [CheckResult("hugepages-1gi-support", title, PASS, "the kernel offers 1Gi pages (hugepages-1048576kB)")]
    sizes = ", ".join(inv.memory.hugepages) or "none"
    if inv.cpu.architecture not in (None, "x86_64"):
        return [CheckResult("hugepages-1gi-support", title, WARN,
                            f"this {inv.cpu.architecture} kernel offers no 1Gi pages (sizes: {sizes})",
                            "use a page size the kernel offers (profile spec.hugepages)")]
    return [CheckResult("hugepages-1gi-support", title, WARN, "CPU lacks 'pdpe1gb': only 2Mi hugepages are possible",
                        "use 2Mi pages, or hosts whose CPUs support 1Gi pages")]


def check_isolation(inv: Inventory) -> list[CheckResult]:
    """isolcpus, nohz_full, rcu_nocbs and kubelet's reservedSystemCPUs must fit together."""
    title = "Checking CPU isolation consistency"
    cpu = inv.cpu
    isolated = set(cpu.isolated)
    if not isolated and not cpu.cmdline_isolcpus:
        return [CheckResult("cpu-isolation", title, SKIP, "no CPUs are isolated")]
    problems: list[str] = []
    if cpu.cmdline_isolcpus is not None and set(cpu.cmdline_isolcpus) != isolated:
        problems.append(f"isolcpus on the command line ({_cpus(cpu.cmdline_isolcpus)}) differs from the kernel's "
                        f"isolated set ({_cpus(isolated)})")
    if not isolated <= set(cpu.nohz_full):
        problems.append(f"isolated CPUs not in nohz_full: {_cpus(isolated - set(cpu.nohz_full))}")
    rcu = set(cpu.cmdline_rcu_nocbs or [])
    if not isolated <= rcu:
        problems.append(f"isolated CPUs not in rcu_nocbs: {_cpus(isolated - rcu)}")
    reserved = inv.kubelet.reserved_system_cpus
    failed = False
    if reserved is not None:
        overlap = isolated & set(reserved)
        if overlap:
            failed = True
            problems.append(f"kubelet reservedSystemCPUs overlaps the isolated CPUs: {_cpus(overlap)}")
        neither = set(cpu.online) - isolated - set(reserved)
        if neither:
            problems.append(f"CPUs neither reserved for the system nor isolated: {_cpus(neither)}")
    if not problems:
        return [CheckResult("cpu-isolation", title, PASS,
                            f"isolated {_cpus(isolated)} are nohz_full and rcu_nocbs"
                            + (f"; kubelet reserves {_cpus(reserved)}" if reserved is not None else ""))]
    return [CheckResult("cpu-isolation", title, FAIL if failed else WARN, "; ".join(problems),
                        "set spec.cpu.reserved/isolated in the profile so they are complementary, then reboot")]


def check_numa_balancing(inv: Inventory) -> list[CheckResult]:
    title = "Checking automatic NUMA balancing"
    if inv.kernel.numa_balancing is None:
        return [CheckResult("numa-balancing", title, SKIP, "/proc/sys/kernel/numa_balancing not present")]
    if inv.kernel.numa_balancing and inv.cpu.isolated:
        return [CheckResult("numa-balancing", title, WARN,
                            "NUMA balancing is on while CPUs are isolated: page migrations add latency to pinned VMs",
                            "sysctl kernel.numa_balancing=0")]
    state = "on" if inv.kernel.numa_balancing else "off"
    return [CheckResult("numa-balancing", title, PASS, f"{state}" + ("" if inv.cpu.isolated else ", no isolated CPUs"))]


def check_swap(inv: Inventory) -> list[CheckResult]:
    title = "Checking that swap is off"
    if inv.memory.swap_total_bytes is None:
        return [CheckResult("swap", title, SKIP, "/proc/meminfo not present")]
    if inv.memory.swap_total_bytes:
        gib = inv.memory.swap_total_bytes / 2**30
        return [CheckResult("swap", title, WARN, f"{gib:.1f} GiB of swap is on: VM memory may be paged out",
                            "swapoff -a and remove swap from /etc/fstab (or configure kubelet's swap behaviour)")]
    return [CheckResult("swap", title, PASS, "no swap")]


def _gpu_problems(inv: Inventory, gpu: Gpu) -> list[str]:
    problems = []
    if gpu.boot_vga:
        problems.append("it is the boot VGA (the console would lose its display)")
    if not inv.iommu.enabled:
        problems.append("IOMMU is off")
    for member in group_strangers(gpu.group_members, {slot(gpu.address)}):
        problems.append(f"IOMMU group {gpu.iommu_group} also holds {member.address} ({member.kind}, "
                        f"{member.driver or 'no driver'}), which is not a function of this GPU")
    return problems


def check_gpus(inv: Inventory) -> list[CheckResult]:
    results = []
    for gpu in inv.gpus:
        check_id, title = f"gpu-passthrough-{gpu.address}", f"Checking passthrough viability of GPU {gpu.address}"
        problems = _gpu_problems(inv, gpu)
        if gpu.passthrough_ready:
            results.append(CheckResult(check_id, title, PASS,
                                       f"{gpu.name}: bound to {gpu.driver} with its whole IOMMU group"))
        elif problems:
            results.append(CheckResult(check_id, title, WARN, f"{gpu.name}: not viable: " + "; ".join(problems),
                                       "use another GPU for passthrough, or move the slot to isolate its IOMMU group"
                                       if not gpu.boot_vga else "keep the boot VGA on the host"))
        else:
            results.append(CheckResult(check_id, title, PASS,
                                       f"{gpu.name}: viable; bound to {gpu.driver or 'no driver'} (host use)"))
        if gpu.link.degraded:
            results.append(CheckResult(
                f"gpu-link-{gpu.address}", f"Checking PCIe link of GPU {gpu.address}", WARN,
                f"link trained at {gpu.link.current_speed_gts:g} GT/s x{gpu.link.current_width}, "
                f"device supports {gpu.link.max_speed_gts:g} GT/s x{gpu.link.max_width}",
                "reseat the GPU or riser, check the slot's bifurcation and power settings"))
        if gpu.aer.get("fatal") or gpu.aer.get("nonfatal"):
            results.append(CheckResult(
                f"gpu-aer-{gpu.address}", f"Checking PCIe AER errors of GPU {gpu.address}", WARN,
                f"uncorrectable AER errors: fatal={gpu.aer.get('fatal', 0)} nonfatal={gpu.aer.get('nonfatal', 0)}",
                "check the GPU, slot and firmware; see the kernel log for the AER records"))
    return results


def check_hugepages(inv: Inventory) -> list[CheckResult]:
    results = []
    for size, pool in inv.memory.hugepages.items():
        title = f"Checking {size} hugepages"
        if not pool.total:
            continue
        if pool.free == 0:
            results.append(CheckResult(f"hugepages-{size}", title, WARN, f"all {pool.total} pages are in use",
                                       "allocate more pages (profile spec.hugepages) or move VMs"))
        else:
            results.append(CheckResult(f"hugepages-{size}", title, PASS, f"{pool.total} configured, {pool.free} free"))
    return results


def check_host_files(inv: Inventory) -> list[CheckResult]:
    results = []
    if inv.unreadable:
        results.append(CheckResult(
            "host-files-access", "Checking that host files are readable by this user", WARN,
            f"{len(inv.unreadable)} file(s) are present but not readable by this user: "
            + ", ".join(inv.unreadable[:3]) + ("…" if len(inv.unreadable) > 3 else ""),
            "run as root for a complete picture; the facts they hold are reported as not readable, not absent"))
    if not inv.warnings:
        return results
    return [*results, CheckResult("host-files", "Checking that host files are readable", WARN,
                        f"{len(inv.warnings)} file(s) could not be understood: " + "; ".join(inv.warnings[:3]),
                        "see the warnings in 'nodeagent inspect'")]


# What dedicated-CPU VMs need of each manager: the policies, what goes wrong without, the state file to remove.
_KUBELET_WANTED: dict[str, tuple[tuple[str, ...], str, str | None]] = {
    "cpuManager": (("static",), "VMs with dedicatedCpuPlacement stay Pending (KubeVirt needs cpumanager=true)",
                   "cpu_manager_state"),
    "topologyManager": (("single-numa-node", "restricted"),
                        "a guest's CPUs, memory and devices may come from different NUMA nodes", None),
    "memoryManager": (("Static",), "guaranteed memory and hugepages are not kept NUMA-local",
                      "memory_manager_state"),
}


def check_kubelet_managers(inv: Inventory) -> list[CheckResult]:
    """One line per kubelet resource manager: the policy it runs, against what dedicated-CPU VMs need."""
    # imported here: inspect renders through this module and has no use for the workload classes
    from nodeagent.workloads.kubelet import MANAGERS, policy, unknown_reason

    kubelet = inv.kubelet
    unknown = unknown_reason(kubelet)
    results = []
    for manager in MANAGERS:
        check_id = "kubelet-" + manager.title.replace(" ", "-").lower()
        title = f"Checking kubelet {manager.title} policy"
        if unknown is not None:
            results.append(CheckResult(check_id, title, SKIP, unknown))
            continue
        have = policy(kubelet, manager) or ""
        wanted, consequence, state = _KUBELET_WANTED[manager.key]
        if have in wanted:
            detail = ""
            if manager.key == "cpuManager" and kubelet.reserved_system_cpus is not None:
                detail = f", reservedSystemCPUs {_cpus(kubelet.reserved_system_cpus)}"
            elif manager.key == "topologyManager":
                detail = f", scope {kubelet.topology_manager_scope or 'container'}"
            results.append(CheckResult(check_id, title, PASS, have + detail))
            continue
        defaulted = " (the kubelet's default)" if have == manager.default else ""
        restart = (f"remove /var/lib/kubelet/{state}, then restart the kubelet" if state
                   else "then restart the kubelet")
        results.append(CheckResult(check_id, title, WARN, f"{have}{defaulted}: {consequence}",
                                   f"on nodes for dedicated-CPU VMs set {manager.config_key}: "
                                   f"{' or '.join(wanted)} in the kubelet configuration, {restart}"))
    return results


CHECKS: tuple[Callable[[Inventory], list[CheckResult]], ...] = (
    check_hardware_virtualization, check_kvm_device, check_vhost_and_tun, check_cgroups, check_iommu,
    check_nested, check_1gi_pages, check_isolation, check_numa_balancing, check_swap, check_gpus,
    check_hugepages, check_kubelet_managers, check_host_files,
)


def run_checks(inv: Inventory) -> list[CheckResult]:
    return [result for check in CHECKS for result in check(inv)]


# --- workload readiness as a check ----------------------------------------------------------


def readiness_check(ready: Readiness) -> CheckResult:
    """A workload's readiness as a check result (``check --for WORKLOAD``): not ready is a FAIL."""
    title = f"Checking readiness for {ready.workload} VMs"
    if ready.ready:
        notes = "".join(f"; {note}" for note in ready.notes)
        return CheckResult(f"ready-{ready.workload}", title, PASS, f"every host requirement is met{notes}")
    return CheckResult(f"ready-{ready.workload}", title, FAIL, "; ".join(ready.reasons),
                       "see the workload class table and the profile example for this workload in the README")
