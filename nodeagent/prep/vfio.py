"""GPUs (and, when the profile asks, NVSwitches) to vfio-pci, with every non-bridge function of their IOMMU group.

A VM can only be given a whole IOMMU group, so the GPU's companions (its HDMI audio, USB-C
controller, UCSI serial bus: other functions of the same PCI device) move with it. A group that
also holds an unrelated device (the classic consumer board with a USB controller behind the same
bridge) is refused: passing it through would take that device from the host.

The bind sequence is driverctl's: ``driver_override`` → ``unbind`` → ``drivers_probe``, so the
kernel itself picks vfio-pci and the override survives a later re-probe. Restoring rebinds the
original driver directly through ``drivers/<name>/bind``.

What ``--force`` may override here: only the boot-VGA refusal (the host loses its local display;
acceptable on a server whose console is serial or BMC). Never: an IOMMU that is off, a group with
unrelated devices, or a host driver in use (unbinding under open handles hangs or crashes their
owners).

NVSwitches (``spec.gpu.nvswitch: passthrough``, the full-passthrough model of an HGX board) move
under exactly the GPUs' rules: their whole IOMMU group, the same refusals. Their host driver is in
use while Fabric Manager runs (it holds ``/dev/nvidia-nvswitch*``): that refusal is the usual one.
The default (``host``) never touches them: the shared-NVSwitch model keeps them on the host driver.

Boot arguments: the IOMMU (``intel_iommu=on``/``amd_iommu=on`` and ``iommu=pt``) when the profile
wants it (``spec.kernel.iommu``, or implied by GPU passthrough), left out when already in force.
"""

from __future__ import annotations

from typing import Any, Protocol

from nodeagent.discover.pci import PCI_DEVICES, group_strangers, is_vfio_driver, read_driver_override, slot
from nodeagent.gpuselect import describe_selector, selected_gpus, unmatched_selectors
from nodeagent.host import Host
from nodeagent.inventory import NVIDIA_VENDOR_ID, Gpu, Inventory, IommuGroupMember, NvSwitch
from nodeagent.owned import MODPROBE_PATH
from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import FILE, Handler, RunState, VerifyError, no_restore, nothing_before
from nodeagent.prep.lifecycle import BootArgs, BootArgsRequest, SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Skip, Subsystem
from nodeagent.profile import NodeProfile

PCI_DRIVERS = "/sys/bus/pci/drivers"
VFIO = "vfio-pci"

#: The host drivers that would grab a GPU of each vendor at boot (for modprobe softdeps).
HOST_DRIVERS = {NVIDIA_VENDOR_ID: ("nouveau", "nvidia"), "1002": ("amdgpu", "radeon"), "8086": ("i915", "xe")}


class Passthrough(Protocol):
    """A PCI function prep hands to vfio-pci with its IOMMU group: a GPU or an NVSwitch."""

    @property
    def address(self) -> str: ...
    @property
    def vendor_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def iommu_group(self) -> int | None: ...
    @property
    def group_members(self) -> list[IommuGroupMember]: ...
    @property
    def boot_vga(self) -> bool: ...


def gpu_selection(profile: NodeProfile, inventory: Inventory) -> tuple[list[Gpu], list[Skip]]:
    """The GPUs to move, and a skip for each selector that picks nothing on this node."""
    skips = [Skip(Subsystem.VFIO, describe_selector(s), "no GPU on this node matches")
             for s in unmatched_selectors(profile, inventory)]
    return selected_gpus(profile, inventory), skips


def nvswitch_selection(profile: NodeProfile, inventory: Inventory) -> tuple[list[NvSwitch], list[Skip]]:
    """Every NVSwitch when the profile passes them through (``spec.gpu.nvswitch: passthrough``)."""
    if not profile.nvswitch_passthrough:
        return [], []
    if not inventory.nvswitch_devices:
        return [], [Skip(Subsystem.VFIO, "spec.gpu.nvswitch", "no NVSwitch on this node")]
    return sorted(inventory.nvswitch_devices, key=lambda s: s.address), []


def _role(device: Passthrough, member: IommuGroupMember) -> str:
    if member.address != device.address:
        return f"{member.kind} companion of {device.address}"
    what = "NVSwitch" if isinstance(device, NvSwitch) else "GPU"
    return f"{what} {device.name or device.device_id}, IOMMU group {device.iommu_group}"


def plan_vfio(ctx: PlanContext, plan: Plan) -> None:
    profile, inventory, facts = ctx.profile, ctx.inventory, ctx.facts
    if not profile.gpu_passthrough and not profile.nvswitch_passthrough:
        _plan_modprobe(ctx, plan, [])
        return
    gpus, skips = gpu_selection(profile, inventory)
    switches, switch_skips = nvswitch_selection(profile, inventory)
    plan.skipped.extend(skips + switch_skips)
    devices: list[Passthrough] = [*gpus, *switches]
    if devices and not inventory.iommu.enabled:
        if profile.iommu_wanted and inventory.iommu.enable_argument:
            selected_slots = {slot(d.address) for d in devices}
            for device in devices:
                if not _allowed_before_reboot(ctx, plan, device, selected_slots):
                    continue
                predicted = facts.predicted_groups.get(device.address)
                plan.skipped.append(Skip(Subsystem.VFIO, device.address,
                                         f"the IOMMU is off: the boot arguments turn it on; the "
                                         f"{_what(device)} is bound after the reboot (the boot unit applies the "
                                         "profile again)"
                                         + ("" if predicted is not None else "; its IOMMU group is checked then "
                                            "(ACS is not readable here to predict it)")))
        else:
            for device in devices:
                plan.refusals.append(Refusal(Subsystem.VFIO, device.address, "the IOMMU is off on this host: "
                                             "vfio-pci cannot isolate the device (set spec.kernel.iommu: true, "
                                             "reboot)"))
        _plan_modprobe(ctx, plan, devices)
        return
    selected_slots = {slot(d.address) for d in devices}
    moves: dict[str, Change] = {}
    for device in devices:
        if not _gpu_allowed(ctx, plan, device, selected_slots):
            continue
        for member in device.group_members:
            if member.is_bridge or is_vfio_driver(member.driver) or member.address in moves:
                continue
            moves[member.address] = Change(
                subsystem=Subsystem.VFIO, target=member.address, current=member.driver, desired=VFIO,
                effect=Effect.NOW, reversible=True, action=Action.PCI_BIND, path=f"{PCI_DEVICES}/{member.address}",
                note=_role(device, member),
                detail={"gpu": device.address, "group": device.iommu_group, "kind": member.kind,
                        "driver": member.driver, "override": facts.driver_overrides.get(member.address)},
            )
    if moves and facts.vfio_manager_pid is not None:
        # Either GPU Operator's sandbox vfio-manager binds GPUs on this node, or nodeagent: never both.
        for device in devices:
            plan.refusals.append(Refusal(
                Subsystem.VFIO, device.address,
                f"GPU Operator's vfio-manager runs on this node (pid {facts.vfio_manager_pid}) and binds GPUs "
                "itself: use either it or spec.gpuPassthrough, not both (label the node "
                "nvidia.com/gpu.deploy.vfio-manager=false, or drop spec.gpuPassthrough)"))
        _plan_modprobe(ctx, plan, devices)
        return
    if moves and not facts.vfio_pci_loaded:
        plan.changes.append(Change(Subsystem.VFIO, "vfio-pci module", "not loaded", "loaded", Effect.NOW, False,
                                   Action.MODPROBE,
                                   note="modprobe vfio-pci (left loaded on revert: harmless without devices)",
                                   detail={"argv": ["modprobe", VFIO]}))
    plan.changes.extend(moves[a] for a in sorted(moves))
    _plan_modprobe(ctx, plan, devices)


def _what(device: Passthrough) -> str:
    return "NVSwitch" if isinstance(device, NvSwitch) else "GPU"


def _refuse_boot_vga(ctx: PlanContext, plan: Plan, gpu: Passthrough) -> bool:
    """The boot-VGA interlock (``--force`` overrides it); True when the GPU may still move."""
    if not gpu.boot_vga:
        return True
    refusal = Refusal(Subsystem.VFIO, gpu.address, "it is the boot VGA device: the host's console and display "
                                                   "run on it (--force overrides when the console is serial/BMC)",
                      forceable=True)
    if ctx.options.force:
        plan.forced.append(refusal)
        return True
    plan.refusals.append(refusal)
    return False


def _allowed_before_reboot(ctx: PlanContext, plan: Plan, gpu: Passthrough, selected_slots: set[str]) -> bool:
    """The interlocks decidable while the IOMMU is still off, refused now rather than after the reboot:
    boot VGA, a host driver in use, and a group the PCI topology already shows not viable."""
    ok = _refuse_boot_vga(ctx, plan, gpu)
    predicted = ctx.facts.predicted_groups.get(gpu.address)
    for address in predicted or [gpu.address]:
        if slot(address) not in selected_slots:
            plan.refusals.append(Refusal(
                Subsystem.VFIO, gpu.address,
                f"once the IOMMU is on, {address} will share its IOMMU group (no ACS isolation between them in "
                "the PCI topology) and is neither selected nor a function of a selected device: the group will not be "
                "viable for passthrough"))
            ok = False
            continue
        use = ctx.facts.device_use.get(address)
        if use is not None and use.holders:
            plan.refusals.append(Refusal(Subsystem.VFIO, address,
                                         "its host driver is in use: " + "; ".join(use.holders)))
            ok = False
    return ok


def _gpu_allowed(ctx: PlanContext, plan: Plan, gpu: Passthrough, selected_slots: set[str]) -> bool:
    """Every refusal for one GPU (or NVSwitch); True when it may move."""
    ok = True
    if gpu.iommu_group is None:
        plan.refusals.append(Refusal(Subsystem.VFIO, gpu.address, "the device has no IOMMU group"))
        return False
    if not _refuse_boot_vga(ctx, plan, gpu):
        ok = False
    strangers = group_strangers(gpu.group_members, selected_slots)
    for member in strangers:
        plan.refusals.append(Refusal(
            Subsystem.VFIO, gpu.address,
            f"IOMMU group {gpu.iommu_group} also holds {member.address} ({member.kind}, driver "
            f"{member.driver or 'none'}), which is neither selected nor a function of a selected device: "
            "the group is not viable for passthrough"))
        ok = False
    for member in gpu.group_members:
        if member.is_bridge or is_vfio_driver(member.driver) or member in strangers:
            continue
        use = ctx.facts.device_use.get(member.address)
        if use is not None and use.holders:
            plan.refusals.append(Refusal(Subsystem.VFIO, member.address,
                                         f"its host driver {member.driver} is in use: " + "; ".join(use.holders)))
            ok = False
    return ok


def _plan_modprobe(ctx: PlanContext, plan: Plan, gpus: list[Passthrough]) -> None:
    """``/etc/modprobe.d/90-nodeagent-vfio.conf``: vfio-pci loads before the GPU host drivers."""
    content = modprobe_conf(ctx.profile.name, gpus, ctx.inventory)
    current = ctx.facts.modprobe_conf
    if content == current or (content is None and current is None):
        return
    plan.changes.append(Change(Subsystem.VFIO, MODPROBE_PATH, _summary(current), _summary(content), Effect.NOW,
                               True, Action.FILE, MODPROBE_PATH, note="boot-time persistence of the vfio-pci binding",
                               detail={"content": content}))


def _summary(content: str | None) -> str | None:
    if content is None:
        return None
    lines = [line for line in content.splitlines() if line and not line.startswith("#")]
    return "; ".join(lines)


def modprobe_conf(profile_name: str, gpus: list[Passthrough], inventory: Inventory) -> str | None:
    if not gpus:
        return None
    drivers = sorted({d for g in gpus for d in HOST_DRIVERS.get(g.vendor_id.lower(), ())})
    lines = [f"# Managed by nodeagent (profile {profile_name}); `nodeagent revert` restores the previous state.",
             "# vfio-pci loads before the GPU host drivers, so that it can claim the passthrough GPUs first."]
    lines += [f"softdep {d} pre: {VFIO}" for d in drivers]
    ids = _safe_ids(gpus, inventory)
    if ids:
        lines.append("# Every device with these ids on this node is passed through, so vfio-pci may claim them by id.")
        lines.append(f"options {VFIO} ids={','.join(ids)}")
    return "\n".join(lines) + "\n"


def _safe_ids(gpus: list[Passthrough], inventory: Inventory) -> list[str]:
    """vendor:device ids vfio-pci may claim at boot: only when no device with that id stays on the host."""
    moving = {m.address for g in gpus for m in g.group_members if not m.is_bridge}
    ids: dict[str, set[str]] = {}
    for gpu in [*inventory.gpus, *inventory.nvswitch_devices]:
        for member in gpu.group_members:
            if member.is_bridge or not member.vendor_id or not member.device_id:
                continue
            ids.setdefault(f"{member.vendor_id}:{member.device_id}", set()).add(member.address)
        ids.setdefault(f"{gpu.vendor_id}:{gpu.device_id}", set()).add(gpu.address)
    wanted = {f"{m.vendor_id}:{m.device_id}" for g in gpus for m in g.group_members
              if not m.is_bridge and m.vendor_id and m.device_id}
    return sorted(i for i in wanted if ids.get(i, set()) <= moving)


# --- boot arguments --------------------------------------------------------------------------


def boot_args(ctx: PlanContext, request: BootArgsRequest) -> BootArgs:
    """The IOMMU switch for this CPU vendor and pass-through mode, unless already in force."""
    contribution = BootArgs()
    if not ctx.profile.iommu_wanted:
        return contribution
    iommu = ctx.inventory.iommu
    enable = iommu.enable_argument
    if enable is None:
        contribution.notes.append(f"no IOMMU boot argument is known for CPU vendor {ctx.inventory.cpu.vendor!r}")
        return contribution
    for arg, in_force in ((enable, iommu.enabled), ("iommu=pt", iommu.passthrough_mode)):
        if not in_force or request.keeps(arg):
            contribution.args.append(arg)
    return contribution


# --- the bind sequence -----------------------------------------------------------------------


def current_driver(host: Host, address: str) -> str | None:
    return host.link_name(f"{PCI_DEVICES}/{address}/driver")


def bind_vfio(host: Host, address: str) -> None:
    """driverctl set-override: override → unbind → drivers_probe, then verify the driver link."""
    device = f"{PCI_DEVICES}/{address}"
    host.write(f"{device}/driver_override", VFIO)
    if current_driver(host, address) is not None:
        host.write(f"{device}/driver/unbind", address)
    host.write("/sys/bus/pci/drivers_probe", address)
    if host.dry_run:
        return
    host.forget_paths()
    bound = current_driver(host, address)
    if bound != VFIO:
        raise RuntimeError(f"{address}: bound to {bound or 'no driver'} after drivers_probe, not {VFIO}")


def restore_driver(host: Host, address: str, driver: str | None, override: str | None) -> None:
    """Undo :func:`bind_vfio` (or a half of it): the old override, then the original driver.

    Reads first and writes only what differs, so it is safe on a device the bind never touched.
    """
    device = f"{PCI_DEVICES}/{address}"
    if read_driver_override(host, address) != override:
        # An empty write clears the override ("\n", as driverctl does).
        host.write(f"{device}/driver_override", override if override else "\n")
    bound = current_driver(host, address)
    if bound == driver:
        return
    if bound is not None:
        host.write(f"{device}/driver/unbind", address)
    if driver is not None:
        if host.is_dir(f"{PCI_DRIVERS}/{driver}"):
            host.write(f"{PCI_DRIVERS}/{driver}/bind", address)
        else:
            host.write("/sys/bus/pci/drivers_probe", address)
    if host.dry_run:
        return
    host.forget_paths()
    now = current_driver(host, address)
    if now != driver:
        raise RuntimeError(f"{address}: rebinding {driver or 'no driver'} left it on {now or 'no driver'}")


def _bind_before(host: Host, change: Change) -> Any:
    return current_driver(host, change.target)


def _bind_apply(host: Host, change: Change, state: RunState) -> None:
    bind_vfio(host, change.target)


def _bind_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    restore_driver(host, target, old, detail.get("override"))


def _modprobe_apply(host: Host, change: Change, state: RunState) -> None:
    argv = change.detail["argv"]
    result = host.run(argv)
    if host.dry_run:
        return
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {result.returncode}): {result.stderr.strip()}")
    host.forget_paths()
    if not host.is_dir(f"{PCI_DRIVERS}/{VFIO}"):
        raise VerifyError(f"{' '.join(argv)} succeeded but {PCI_DRIVERS}/{VFIO} is absent")


BIND = Handler(_bind_before, _bind_apply, _bind_restore)
MODPROBE = Handler(nothing_before, _modprobe_apply, no_restore)  # the module stays loaded: harmless

SPEC = SubsystemSpec(Subsystem.VFIO, plan=plan_vfio, boot_args=boot_args,
                     handlers={Action.PCI_BIND: BIND, Action.MODPROBE: MODPROBE, Action.FILE: FILE})
