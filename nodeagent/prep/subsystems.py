"""The registry: every prep subsystem, keyed by :class:`Subsystem`, and every handler, keyed by :class:`Action`.

The order of :data:`SUBSYSTEMS` is the planning order: memory first (hugepages, shrinking before
growing), then KSM, the governor, the GPU bindings (module load before binds), the kubelet's
managers (its configuration, then its state files), the installed
profile, the boot arguments (a hugepage request that falls short at apply time joins
them), and kured's reboot sentinel last. The order of the boot-argument contributors is the
order of the persisted arguments.

:data:`HANDLERS` holds every action any subsystem or bootloader writer handles, so that
``revert`` finds the handler of each journal entry, whichever version wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable

from nodeagent.prep import governor, hugepages, isolation, ksm, kubelet, persist, reboot, rtsched, vfio, vgpu
from nodeagent.prep.bootargs import BootArgsAssembler
from nodeagent.prep.bootloaders import Grubby, KernelInstall
from nodeagent.prep.grub import GrubDropin
from nodeagent.prep.handlers import Handler
from nodeagent.prep.lifecycle import SubsystemSpec
from nodeagent.prep.model import Action, Subsystem

BOOT_ARGS = BootArgsAssembler(
    contributors=(isolation.boot_args, vfio.boot_args, hugepages.boot_args),
    writers=(GrubDropin(), Grubby(), KernelInstall()),
)

SUBSYSTEMS: dict[Subsystem, SubsystemSpec] = {spec.key: spec for spec in (
    hugepages.SPEC, ksm.SPEC, governor.SPEC, vfio.SPEC, vgpu.SPEC, rtsched.SPEC, kubelet.SPEC, persist.SPEC,
    BOOT_ARGS.spec(), reboot.SPEC,
)}


def _handlers(specs: Iterable[SubsystemSpec]) -> dict[Action, Handler]:
    handlers: dict[Action, Handler] = {}
    for spec in specs:
        for action, handler in spec.handlers.items():
            if handlers.setdefault(action, handler) is not handler:
                raise RuntimeError(f"two handlers registered for action {action}")  # a programming error
    return handlers


HANDLERS: dict[Action, Handler] = _handlers(SUBSYSTEMS.values())
