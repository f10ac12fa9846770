"""What a prep subsystem is, as tuned's plugins are: its plan, its boot arguments, its handlers.

Each subsystem module (hugepages, ksm, governor, vfio, persist, bootargs) exposes one
:class:`SubsystemSpec`; :mod:`nodeagent.prep.subsystems` holds the registry keyed by
:class:`~nodeagent.prep.model.Subsystem` and by :class:`~nodeagent.prep.model.Action`.

A subsystem that needs something on the kernel command line does not write it: it *contributes*
the arguments (:class:`BootArgs`) and the boot-arguments subsystem assembles every contribution
into the one set a bootloader writer persists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import Handler
from nodeagent.prep.model import Action, Plan, Refusal, Subsystem


@dataclass(frozen=True)
class BootArgsRequest:
    """What a contributor sees besides the PlanContext."""

    existing: tuple[str, ...]  # the arguments nodeagent has persisted (the drop-in's, today)
    booted: frozenset[str]  # the words of the running kernel's command line
    deferred_page_sizes: frozenset[int] = frozenset()  # hugepage sizes that fell short at runtime, this apply

    def keeps(self, arg: str) -> bool:
        """An argument already booted or persisted stays, even when its effect is the default:
        dropping it would rewrite the persisted set for nothing."""
        return arg in self.booted or arg in self.existing


@dataclass
class BootArgs:
    """One contribution: arguments in their order, notes for the plan, refusals (``forceable`` ones
    are overridden by ``--force``)."""

    args: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


Planner = Callable[[PlanContext, Plan], None]
BootArgsContributor = Callable[[PlanContext, BootArgsRequest], BootArgs]


@dataclass(frozen=True)
class SubsystemSpec:
    """One subsystem's life cycle: plan its changes, contribute boot arguments, apply/restore its actions.

    ``handlers`` lists every action the subsystem's changes name, generic ones included: the
    registry checks that two subsystems registering one action register the same handler.
    """

    key: Subsystem
    plan: Planner | None = None
    boot_args: BootArgsContributor | None = None
    handlers: Mapping[Action, Handler] = field(default_factory=dict)
