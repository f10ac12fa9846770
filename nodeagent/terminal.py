"""Text renderings for people: the NUMA topology picture of ``inspect``, the ``check`` report and the
``labels`` table.

The picture follows hwloc's lstopo in spirit: one box per NUMA node holding its CPUs (isolated
ones marked), memory, hugepages, GPUs and NICs; devices without NUMA affinity get a box of their
own. Then a one-screen summary of everything a VM scheduler cares about.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import TYPE_CHECKING

from nodeagent.checks import CheckResult
from nodeagent.discover.pci import is_vfio_driver
from nodeagent.inventory import CpuInfo, Gpu, HugepagePool, Inventory, Nic
from nodeagent.labels import LabelConfig, LabelSet
from nodeagent.parse import format_cpulist
from nodeagent.vgpupool import inventory_pools, vgpu_gpus

if TYPE_CHECKING:
    from nodeagent.workloads import Readiness

WIDTH = 92
ISOLATED, HOUSEKEEPING = "■", "·"


def human_bytes(value: int | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def _cpus(cpus: Iterable[int]) -> str:
    return format_cpulist(cpus) or "none"


def _box(title: str, lines: list[str]) -> list[str]:
    inner = WIDTH - 4
    out = ["┌─ " + title + " " + "─" * max(inner - len(title) - 1, 0) + "┐"]
    for line in lines:
        for piece in textwrap.wrap(line, inner, subsequent_indent=" " * 11, break_on_hyphens=False) or [""]:
            out.append("│ " + piece.ljust(inner) + " │")
    out.append("└" + "─" * (WIDTH - 2) + "┘")
    return out


def _cpu_map(cpus: list[int], isolated: set[int]) -> list[str]:
    """One mark per CPU, rows of 32, so isolation is visible at a glance."""
    rows = []
    for start in range(0, len(cpus), 32):
        chunk = cpus[start : start + 32]
        marks = "".join(ISOLATED if c in isolated else HOUSEKEEPING for c in chunk)
        rows.append(f"{'':11}{marks}  {format_cpulist(chunk)}")
    return rows


def _pools(pools: dict[str, HugepagePool]) -> str:
    if not pools:
        return "none"
    return " · ".join(f"{size} {p.free if p.free is not None else '?'}/{p.total if p.total is not None else '?'} free"
                      for size, p in pools.items())


def _gpu_line(gpu: Gpu) -> str:
    if gpu.passthrough_ready:
        state = "passthrough-ready"
    elif gpu.driver and not is_vfio_driver(gpu.driver):
        state = "host"
    else:
        state = "not ready"
    link = ""
    if gpu.link.current_speed_gts is not None:
        link = f" · PCIe {gpu.link.current_speed_gts:g} GT/s x{gpu.link.current_width}"
        if gpu.link.degraded:
            link += f" (DEGRADED, max {gpu.link.max_speed_gts:g} GT/s x{gpu.link.max_width})"
    group = f" · group {gpu.iommu_group}" if gpu.iommu_group is not None else ""
    vga = " · boot VGA" if gpu.boot_vga else ""
    return f"{gpu.address} {gpu.name} · {gpu.driver or 'no driver'} · {state}{group}{link}{vga}"


def _nic_line(nic: Nic) -> str:
    link = {True: "up", False: "down", None: nic.operstate or "unknown"}[nic.link_up]
    sriov = ""
    if nic.sriov_totalvfs:
        sriov = f" · SR-IOV {nic.sriov_numvfs or 0}/{nic.sriov_totalvfs} VFs"
    speed = f" · {nic.speed_mbps} Mb/s" if nic.speed_mbps else ""
    return f"{nic.name} ({nic.driver or 'no driver'}, {nic.address or 'not PCI'}) · {link}{speed}{sriov}"


def _shape(cpu: CpuInfo) -> str:
    """sockets × cores × threads, or the per-package core counts when packages differ."""
    if cpu.cores_per_socket is not None:
        return f"{cpu.sockets} socket(s) × {cpu.cores_per_socket} cores × {cpu.threads_per_core} threads"
    counts = " + ".join(str(n) for n in cpu.cores_per_package.values())
    return f"{cpu.sockets} package(s) of {counts} cores, up to {cpu.threads_per_core} threads each"


def render_topology(inv: Inventory) -> str:
    cpu = inv.cpu
    isolated = set(cpu.isolated)
    lines = [
        f"{inv.hostname or 'host'} — {cpu.model_name or 'unknown CPU'} ({cpu.vendor or 'unknown vendor'})",
        f"{_shape(cpu)} = {cpu.logical_cpus} CPUs"
        + (f" ({len(cpu.online)} online)" if len(cpu.online) != cpu.logical_cpus else "")
        + f" · {len(inv.numa)} NUMA node(s) · kernel {inv.kernel.release or 'unknown'}"
        + (f" ({inv.kernel.preempt_model})" if inv.kernel.preempt_model else ""),
        "",
    ]
    vfs = {vf for nic in inv.nics for vf in nic.vfs}
    for node in inv.numa:
        body = [f"CPUs       {_cpus(node.cpus)}   isolated ({ISOLATED}): {_cpus(isolated & set(node.cpus))}"]
        body += _cpu_map(node.cpus, isolated)
        body.append(f"Memory     {human_bytes(node.memory_total_bytes)} total, "
                    f"{human_bytes(node.memory_free_bytes)} free")
        body.append(f"Hugepages  {_pools(node.hugepages)}")
        gpus = [g for g in inv.gpus if g.numa_node == node.id or (g.numa_node is None and len(inv.numa) == 1)]
        nics = [n for n in inv.nics if (n.numa_node == node.id or (n.numa_node is None and len(inv.numa) == 1))
                and n.address not in vfs]
        body += [f"GPU        {_gpu_line(g)}" for g in gpus] or ["GPUs       none"]
        body += [f"NIC        {_nic_line(n)}" for n in nics] or ["NICs       none"]
        distances = " ".join(str(d) for d in node.distances)
        lines += _box(f"NUMA node {node.id} (distances {distances})", body)
    if len(inv.numa) > 1:
        loose_gpus = [g for g in inv.gpus if g.numa_node is None]
        loose_nics = [n for n in inv.nics if n.numa_node is None and n.address not in vfs]
        if loose_gpus or loose_nics:
            lines += _box("No NUMA affinity", [f"GPU        {_gpu_line(g)}" for g in loose_gpus]
                          + [f"NIC        {_nic_line(n)}" for n in loose_nics])
    lines.append("")
    lines += render_summary(inv)
    return "\n".join(lines) + "\n"


def render_summary(inv: Inventory) -> list[str]:
    cpu, kvm, iommu, ksm, mem = inv.cpu, inv.kvm, inv.iommu, inv.ksm, inv.memory
    kvm_text = "not available"
    if kvm.available:
        api = f"API {kvm.api_version}" if kvm.api_version is not None else "API not queried"
        nested = {True: "nested on", False: "nested off", None: "nested n/a"}[kvm.nested]
        kvm_text = f"available ({api}, {kvm.module or 'no module'}, {nested})"
    kvm_text += f" · vhost-net {'present' if kvm.vhost_net else 'missing'} · tun {'present' if kvm.tun else 'missing'}"
    iommu_text = (f"on ({iommu.groups} groups{', iommu=pt' if iommu.passthrough_mode else ''})" if iommu.enabled
                  else "off")
    iommu_text += f" · firmware table {iommu.firmware_table or 'none'}"
    ksm_text = "unavailable" if not ksm.available else (
        f"{'running' if ksm.running else 'off'} (run={ksm.run}) · sharing {ksm.pages_sharing or 0} pages")
    huge = " · ".join(f"{s}: {p.total} total, {p.free} free" for s, p in mem.hugepages.items()) or "none"
    governor = cpu.governor or "n/a (no cpufreq)"
    smt = {True: "on", False: "off", None: "unknown"}[cpu.smt_active]
    kubelet = inv.kubelet
    kubelet_text = "no config" if not kubelet.config_present else (
        f"config {kubelet.config_path} not readable by this user") if not kubelet.config_readable else (
        f"cpuManager {kubelet.cpu_manager_policy or 'none'}"
        f" · topologyManager {kubelet.topology_manager_policy or 'none'}"
        f" · memoryManager {kubelet.memory_manager_policy or 'None'}"
        f" · reserved {_cpus(kubelet.reserved_system_cpus or [])}")
    if kubelet.running is not None:
        kubelet_text += " · running" if kubelet.running else " · not running"
    pending = []
    if inv.prep.reboot_required:
        pending.append("reboot required")
    if inv.prep.kubelet_restart_required:
        pending.append("kubelet restart required")
    rows = [
        ("CPU", f"{cpu.virtualization or 'no vmx/svm'} · SMT {smt} · governor {governor}"
                f" · isolated {_cpus(cpu.isolated)} · nohz_full {_cpus(cpu.nohz_full)}"),
        ("Memory", f"{human_bytes(mem.total_bytes)} total, {human_bytes(mem.available_bytes)} available · "
                   f"swap {human_bytes(mem.swap_total_bytes)} · THP {mem.thp_enabled or 'unknown'}"),
        ("Hugepages", f"{huge} · default {mem.default_hugepage_size or 'unknown'}"),
        ("KVM", kvm_text),
        ("IOMMU", iommu_text),
        ("KSM", ksm_text),
        ("GPUs", f"{len(inv.gpus)} ({len(inv.passthrough_gpus)} passthrough-ready)"
                 + (f" · {len(inv.nvswitches)} NVSwitches" if inv.nvswitches else "")
                 + "".join(f" · NVLink {f.id}: {len(f.gpus)} GPUs ({len(f.passthrough_gpus)} passthrough-ready), "
                           f"NVSwitches {f.mode}" for f in inv.nvlink_fabrics)),
        ("Kernel", f"{inv.kernel.release or 'unknown'} · {'PREEMPT_RT' if inv.kernel.realtime else 'not realtime'} · "
                   f"cgroup v{inv.kernel.cgroup_version or '?'} · numa_balancing {inv.kernel.numa_balancing}"),
        ("Kubelet", kubelet_text),
        ("nodeagent", ", ".join(pending) if pending else
         ("journal present" if inv.prep.journal_present else "no changes applied")),
        ("Warnings", "; ".join(inv.warnings) if inv.warnings else "none"),
    ]
    if inv.vgpu.capable:
        rows.insert(next(i for i, row in enumerate(rows) if row[0] == "GPUs") + 1, ("vGPU", _vgpu_text(inv)))
    if inv.skipped:
        rows.append(("Skipped", "; ".join(f"{k}: {v}" for k, v in sorted(inv.skipped.items()))))
    out = ["Summary"]
    for name, text in rows:
        wrapped = textwrap.wrap(text, WIDTH - 13, break_on_hyphens=False) or [""]
        out.append(f"  {name:<10} {wrapped[0]}")
        out += [f"  {'':<10} {piece}" for piece in wrapped[1:]]
    return out


def _vgpu_text(inv: Inventory) -> str:
    """``3 GPUs · 4 instances: 2 GRID A100D-20C, 2 GRID T4-4Q · 4 more of those types``."""
    pools = inventory_pools(inv)
    per_type: dict[str, int] = {}
    for pool in pools:
        if pool.used:
            per_type[pool.name or pool.type_id] = per_type.get(pool.name or pool.type_id, 0) + pool.used
    used = sum(per_type.values())
    kinds = ", ".join(f"{n} {name}" for name, n in sorted(per_type.items()))
    more = sum(p.available for p in pools if p.used)
    vfs = f" · {len(inv.vgpu.sriov_vfs)} vGPU VFs" if inv.vgpu.sriov_vfs else ""
    return (f"{len(vgpu_gpus(inv.vgpu))} GPUs offer vGPU types · {used} instances" + (f": {kinds}" if kinds else "")
            + f" · {more} more of those types{vfs}")


def render_checks(results: list[CheckResult], readiness: dict[str, Readiness] | None) -> str:
    """virt-host-validate's layout: ``NODEAGENT: <title> ...: STATUS (reason)``, then readiness."""
    lines = []
    width = max((len(r.title) for r in results), default=40) + 2
    for result in results:
        detail = f" ({result.reason})" if result.reason else ""
        lines.append(f"  {result.title:<{width}}: {result.status}{detail}")
        if result.fix and result.status != "PASS":
            lines.append(f"  {'':<{width}}  fix: {result.fix}")
    if readiness:
        lines += ["", "Workload readiness"]
        for item in readiness.values():
            state = "ready" if item.ready else "not ready: " + "; ".join(item.reasons)
            lines.append(f"  {item.workload:<13} {state}")
            lines += [f"  {'':<13} note: {note}" for note in item.notes]
    counts = {s: sum(1 for r in results if r.status == s) for s in ("PASS", "WARN", "FAIL", "SKIP")}
    lines += ["", " · ".join(f"{n} {s}" for s, n in counts.items())]
    return "\n".join(lines) + "\n"


def render_labels(label_set: LabelSet, config: LabelConfig) -> str:
    width = max((len(k) for k in label_set.labels), default=5) + 2
    lines = [f"{'LABEL':<{width}}VALUE"]
    lines += [f"{key:<{width}}{value}" for key, value in label_set.labels.items()]
    lines.append("")
    if label_set.taints:
        lines.append("TAINTS")
        lines += [f"  {taint}" for taint in label_set.taints]
    else:
        lines.append("TAINTS  (none)")
    lines.append("")
    lines.append(f"{len(label_set.labels)} labels, listed in the annotation {config.owned_labels_annotation}")
    return "\n".join(lines) + "\n"
