"""CPU isolation: ``spec.cpu.isolated``/``reserved`` as boot arguments, and the refusals that guard them.

Isolation exists only on the kernel command line (``isolcpus``, ``nohz_full``, ``rcu_nocbs``; the
housekeeping set for interrupts and systemd), so this module only contributes boot arguments.
Isolating every CPU, or every CPU of a NUMA node, leaves the kernel, kubelet or that node's device
interrupts nowhere to run: refused unless ``--force``.
"""

from __future__ import annotations

from nodeagent.parse import format_cpulist
from nodeagent.prep.context import PlanContext
from nodeagent.prep.lifecycle import BootArgs, BootArgsRequest
from nodeagent.prep.model import Refusal, Subsystem


def boot_args(ctx: PlanContext, request: BootArgsRequest) -> BootArgs:
    cpu = ctx.profile.cpu
    contribution = BootArgs(refusals=housekeeping_refusals(ctx))
    if cpu is not None and cpu.isolated:
        isolated = format_cpulist(cpu.isolated)
        contribution.args += [f"isolcpus=managed_irq,domain,{isolated}", f"nohz_full={isolated}",
                              f"rcu_nocbs={isolated}"]
    if cpu is not None and (cpu.reserved or cpu.isolated):
        reserved = cpu.reserved or sorted(set(ctx.inventory.cpu.online) - set(cpu.isolated or []))
        if reserved:
            housekeeping = format_cpulist(reserved)
            contribution.args += [f"irqaffinity={housekeeping}", f"systemd.cpu_affinity={housekeeping}"]
    return contribution


def housekeeping_refusals(ctx: PlanContext) -> list[Refusal]:
    """Isolation that leaves no housekeeping CPU, on the node or on a NUMA node (``--force`` overrides)."""
    cpu = ctx.profile.cpu
    if cpu is None or not cpu.isolated:
        return []
    online = set(ctx.inventory.cpu.online)
    isolated = set(cpu.isolated)
    housekeeping = set(cpu.reserved) if cpu.reserved else online - isolated
    refusals: list[Refusal] = []
    if online and isolated >= online:
        refusals.append(Refusal(Subsystem.BOOTARGS, "isolcpus",
                                f"isolating every CPU ({format_cpulist(sorted(online))}) leaves none for the "
                                "kernel, kubelet and interrupts", forceable=True))
    for node in ctx.inventory.numa:
        if node.cpus and not set(node.cpus) & housekeeping:
            refusals.append(Refusal(Subsystem.BOOTARGS, f"node{node.id}",
                                    f"NUMA node {node.id} has CPUs {format_cpulist(node.cpus)} but no housekeeping "
                                    "CPU: its devices' interrupts and kernel threads would run on another node",
                                    forceable=True))
    return refusals
