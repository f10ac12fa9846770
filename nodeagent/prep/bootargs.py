"""Boot arguments: ``/etc/default/grub.d/90-nodeagent.cfg`` and the bootloader regeneration.

nodeagent never edits ``/etc/default/grub`` or ``grub.cfg``: it owns one drop-in that appends its
arguments to ``GRUB_CMDLINE_LINUX`` and lets the distribution's own command (``update-grub`` /
``grub2-mkconfig -o …``) rebuild the config. Revert removes the drop-in and regenerates again.

The node is reboot-required while an argument of the drop-in is not on ``/proc/cmdline``.

The drop-in is sourced by a shell; every argument is validated to shell-safe characters by the
profile parser, and the generated ones are digits, commas and names.
"""

from __future__ import annotations

from nodeagent.owned import DROPIN_PATH, REGENERATE_HINT, dropin_args, hugepage_sizes, pending, render_dropin
from nodeagent.parse import format_cpulist, kernel_page_size_arg, split_cmdline
from nodeagent.prep.context import PlanContext
from nodeagent.prep.hugepages import boot_hugepage_args, desired_counts
from nodeagent.prep.model import Change, Effect, Plan, Refusal

X86_DEFAULT_HUGEPAGE_KB = 2048


def check_cpus(ctx: PlanContext, plan: Plan) -> None:
    """Refuse isolation that leaves no housekeeping CPU, on the node or on a NUMA node."""
    cpu = ctx.profile.cpu
    if cpu is None or not cpu.isolated:
        return
    online = set(ctx.inventory.cpu.online)
    isolated = set(cpu.isolated)
    housekeeping = set(cpu.reserved) if cpu.reserved else online - isolated
    refusals: list[Refusal] = []
    if online and isolated >= online:
        refusals.append(Refusal("bootargs", "isolcpus", f"isolating every CPU ({format_cpulist(sorted(online))}) "
                                "leaves none for the kernel, kubelet and interrupts", forceable=True))
    for node in ctx.inventory.numa:
        if node.cpus and not set(node.cpus) & housekeeping:
            refusals.append(Refusal("bootargs", f"node{node.id}",
                                    f"NUMA node {node.id} has CPUs {format_cpulist(node.cpus)} but no housekeeping "
                                    "CPU: its devices' interrupts and kernel threads would run on another node",
                                    forceable=True))
    for refusal in refusals:
        (plan.forced if ctx.options.force else plan.refusals).append(refusal)


def desired_args(ctx: PlanContext, boot_sizes: set[int]) -> tuple[list[str], list[str]]:
    """The arguments the profile implies on this node, and notes about them.

    Arguments whose effect is already in force without them (an IOMMU on by default, the default
    page size already the wanted one) are left out, unless the command line or the drop-in
    already carries them: then they stay, so the drop-in keeps what booted.
    """
    profile, inventory = ctx.profile, ctx.inventory
    existing = set(dropin_args(ctx.facts.dropin))
    booted = set(split_cmdline(inventory.kernel.cmdline))
    args: list[str] = []
    notes: list[str] = []
    cpu = profile.cpu
    if cpu is not None and cpu.isolated:
        isolated = format_cpulist(cpu.isolated)
        args += [f"isolcpus=managed_irq,domain,{isolated}", f"nohz_full={isolated}", f"rcu_nocbs={isolated}"]
    if cpu is not None and (cpu.reserved or cpu.isolated):
        reserved = cpu.reserved or sorted(set(inventory.cpu.online) - set(cpu.isolated or []))
        if reserved:
            housekeeping = format_cpulist(reserved)
            args += [f"irqaffinity={housekeeping}", f"systemd.cpu_affinity={housekeeping}"]
    if profile.iommu_wanted:
        enable = inventory.iommu.enable_argument
        if enable is None:
            notes.append(f"no IOMMU boot argument is known for CPU vendor {inventory.cpu.vendor!r}")
        else:
            for arg in (enable, "iommu=pt"):
                already = (arg == enable and inventory.iommu.enabled) or (arg == "iommu=pt" and
                                                                          inventory.iommu.passthrough_mode)
                if not already or arg in booted or arg in existing:
                    args.append(arg)
    hugepages = profile.hugepages
    if hugepages is not None and hugepages.default_size_kb is not None:
        arg = f"default_hugepagesz={kernel_page_size_arg(hugepages.default_size_kb)}"
        running = inventory.memory.default_hugepage_size
        from nodeagent.parse import parse_page_size_kb

        running_kb = parse_page_size_kb(running) if running else X86_DEFAULT_HUGEPAGE_KB
        if running_kb != hugepages.default_size_kb or arg in booted or arg in existing:
            args.append(arg)
    if hugepages is not None and boot_sizes:
        wanted = desired_counts(hugepages, inventory)
        counts: dict[int, dict[int, int]] = {}
        for (node, size_kb), count in wanted.items():
            if size_kb in boot_sizes:
                counts.setdefault(size_kb, {})[node] = count
        page_args, note = boot_hugepage_args(counts, inventory.kernel.release)
        args += page_args
        if note:
            notes.append(note)
    if profile.kernel is not None:
        args += [a for a in profile.kernel.additional_args if a not in args]
    return args, notes


def bootargs_change(ctx: PlanContext, extra_sizes: set[int] | None = None) -> tuple[Change | None, list[str]]:
    """The drop-in change (None when it is already right) and notes. ``extra_sizes``: page sizes
    whose runtime allocation fell short during this apply and now go to the boot line."""
    existing_args = dropin_args(ctx.facts.dropin)
    boot_sizes = hugepage_sizes(existing_args) | set(extra_sizes or ())
    if ctx.profile.hugepages is not None:
        boot_sizes &= {r.size_kb for r in ctx.profile.hugepages.pages}
    args, notes = desired_args(ctx, boot_sizes)
    content = render_dropin(ctx.profile.name, args)
    if content == ctx.facts.dropin or (content is None and ctx.facts.dropin is None):
        return None, notes
    waiting = pending(args, ctx.inventory.kernel.cmdline)
    command = ctx.facts.grub_command if ctx.facts.can_run_commands else None
    if command is None:
        notes.append(f"no bootloader tool can be run here: regenerate the config yourself with {REGENERATE_HINT}")
    note = "reboot to take effect: " + " ".join(waiting) if waiting else "every argument is already in force"
    change = Change(
        subsystem="bootargs", target=DROPIN_PATH, current=existing_args or None, desired=args or None,
        effect=Effect.REBOOT if waiting else Effect.NOW, reversible=True, action="grub-dropin", path=DROPIN_PATH,
        note=note, detail={"content": content, "regenerate": command, "pending": waiting},
    )
    return change, notes


def plan_bootargs(ctx: PlanContext, plan: Plan) -> None:
    check_cpus(ctx, plan)
    change, notes = bootargs_change(ctx)
    plan.notes.extend(notes)
    if change is not None:
        plan.changes.append(change)
    else:
        plan.pending_reboot_args = pending(dropin_args(ctx.facts.dropin), ctx.inventory.kernel.cmdline)
