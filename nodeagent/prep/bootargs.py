"""Boot arguments: every subsystem's contribution, assembled once, persisted by the bootloader's writer.

This module knows no subsystem. Each one that needs the kernel command line contributes
arguments (:class:`~nodeagent.prep.lifecycle.BootArgs`); :class:`BootArgsAssembler` asks them in
a fixed order (the order of the persisted arguments: changing it would rewrite every existing
drop-in for nothing), appends the profile's own ``spec.kernel.additionalArgs`` last, and hands
the result to the :class:`BootloaderWriter` of this host's bootloader family, which plans the
one change that persists them (GRUB's drop-in today; see :mod:`nodeagent.prep.grub`).

The node is reboot-required while a persisted argument is not on ``/proc/cmdline``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from nodeagent.owned import pending, persisted_args
from nodeagent.parse import split_cmdline
from nodeagent.prep.context import PlanContext
from nodeagent.prep.facts import PrepFacts
from nodeagent.prep.handlers import Handler
from nodeagent.prep.lifecycle import BootArgs, BootArgsContributor, BootArgsRequest, SubsystemSpec
from nodeagent.prep.model import Action, Change, Plan, Refusal, Subsystem


class BootloaderWriter(Protocol):
    """How one bootloader family persists nodeagent's kernel arguments.

    A writer reads what it persisted from :class:`~nodeagent.prep.facts.PrepFacts` and plans one
    :class:`Change` whose action it handles itself (``handlers``, registered for apply and for
    ``revert`` of journals it wrote, whichever family is detected later).
    """

    name: str

    @property
    def handlers(self) -> Mapping[Action, Handler]: ...

    def detect(self, facts: PrepFacts) -> bool:
        """This host boots through the family."""
        ...

    def persisted(self, facts: PrepFacts) -> list[str]:
        """The arguments the writer holds for nodeagent now (empty: none)."""
        ...

    def change(self, ctx: PlanContext, args: list[str], waiting: list[str]) -> tuple[Change | None, list[str]]:
        """The change that persists ``args`` (None when already persisted) and notes about it.
        ``waiting``: those of ``args`` the running kernel was not booted with."""
        ...


def unknown_bootloader(facts: PrepFacts) -> str:
    return ("unknown bootloader: nodeagent writes kernel arguments through GRUB's /etc/default/grub.d "
            "(Debian, Ubuntu), grubby with BLS entries (RHEL, Fedora, CentOS Stream) or /etc/kernel/cmdline + "
            f"kernel-install (systemd-boot); found {facts.bootloader.evidence()}. Add the arguments with the "
            "host's own bootloader tool")


def profile_args(ctx: PlanContext, request: BootArgsRequest) -> BootArgs:
    """``spec.kernel.additionalArgs``: the profile's own, after every computed argument."""
    kernel = ctx.profile.kernel
    return BootArgs(args=list(kernel.additional_args) if kernel is not None else [])


@dataclass(frozen=True)
class BootArgsAssembler:
    contributors: tuple[BootArgsContributor, ...]
    writers: tuple[BootloaderWriter, ...]

    def writer(self, facts: PrepFacts) -> BootloaderWriter | None:
        """The writer of this host's bootloader family; None when no family is recognised."""
        return next((w for w in self.writers if w.detect(facts)), None)

    def persisted(self, facts: PrepFacts) -> list[str]:
        writer = self.writer(facts)
        return writer.persisted(facts) if writer is not None else persisted_args(facts.dropin, facts.bootloader.state)

    @property
    def handlers(self) -> dict[Action, Handler]:
        return {action: handler for w in self.writers for action, handler in w.handlers.items()}

    def desired(self, ctx: PlanContext, deferred_page_sizes: Iterable[int] = ()) -> BootArgs:
        """Every contribution in order; an argument already contributed is not repeated."""
        request = BootArgsRequest(existing=tuple(self.persisted(ctx.facts)),
                                  booted=frozenset(split_cmdline(ctx.inventory.kernel.cmdline)),
                                  deferred_page_sizes=frozenset(deferred_page_sizes))
        total = BootArgs()
        for contribute in (*self.contributors, profile_args):
            part = contribute(ctx, request)
            total.args += [a for a in part.args if a not in total.args]
            total.notes += part.notes
            total.refusals += part.refusals
        return total

    def change(self, ctx: PlanContext, deferred_page_sizes: Iterable[int] = ()) -> tuple[Change | None, list[str]]:
        """The writer's change (None when the persisted arguments are already right) and notes.
        ``deferred_page_sizes``: hugepage sizes whose runtime allocation fell short during this
        apply and now go to the boot line."""
        return self._change(ctx, self.desired(ctx, deferred_page_sizes))

    def _change(self, ctx: PlanContext, desired: BootArgs) -> tuple[Change | None, list[str]]:
        writer = self.writer(ctx.facts)
        if writer is None:
            if desired.args != self.persisted(ctx.facts):
                return None, [*desired.notes, unknown_bootloader(ctx.facts)]
            return None, desired.notes
        waiting = pending(desired.args, ctx.inventory.kernel.cmdline)
        change, notes = writer.change(ctx, desired.args, waiting)
        return change, desired.notes + notes

    def plan(self, ctx: PlanContext, plan: Plan) -> None:
        desired = self.desired(ctx)
        for refusal in desired.refusals:
            (plan.forced if refusal.forceable and ctx.options.force else plan.refusals).append(refusal)
        if self.writer(ctx.facts) is None and desired.args != self.persisted(ctx.facts):
            # Written where nothing reads it, an argument would leave the node "reboot required" forever.
            plan.refusals.append(Refusal(Subsystem.BOOTARGS, " ".join(desired.args) or "boot arguments",
                                         unknown_bootloader(ctx.facts)))
            return
        change, notes = self._change(ctx, desired)
        plan.notes.extend(notes)
        if change is not None:
            plan.changes.append(change)
        else:
            plan.pending_reboot_args = pending(self.persisted(ctx.facts), ctx.inventory.kernel.cmdline)

    def spec(self) -> SubsystemSpec:
        return SubsystemSpec(Subsystem.BOOTARGS, plan=self.plan, handlers=self.handlers)
