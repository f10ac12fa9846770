"""The GRUB writer of boot arguments: ``/etc/default/grub.d/90-nodeagent.cfg`` and the regeneration.

nodeagent never edits ``/etc/default/grub`` or ``grub.cfg``: it owns one drop-in that appends its
arguments to ``GRUB_CMDLINE_LINUX`` and lets the distribution's own command (``update-grub`` /
``grub2-mkconfig -o …``) rebuild the config. Revert puts the old drop-in back (removes it) and
regenerates again.

The drop-in is sourced by a shell; every argument is validated to shell-safe characters by the
profile parser, and the generated ones are digits, commas and names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodeagent.host import Host
from nodeagent.owned import DROPIN_PATH, REGENERATE_HINT, dropin_args, render_dropin
from nodeagent.prep.context import PlanContext
from nodeagent.prep.facts import PrepFacts
from nodeagent.prep.handlers import Handler, RunState, file_apply, file_before, put_file
from nodeagent.prep.model import Action, Change, Effect, Subsystem


class GrubDropin:
    """A :class:`~nodeagent.prep.bootargs.BootloaderWriter` for GRUB 2 with ``/etc/default/grub.d``."""

    name = "grub"

    @property
    def handlers(self) -> Mapping[Action, Handler]:
        return {Action.GRUB_DROPIN: DROPIN}

    def detect(self, facts: PrepFacts) -> bool:
        """Debian and Ubuntu: their grub-mkconfig sources /etc/default/grub.d (RHEL's and SUSE's do not)."""
        return facts.bootloader.family() == "grub"

    def persisted(self, facts: PrepFacts) -> list[str]:
        return dropin_args(facts.dropin)

    def change(self, ctx: PlanContext, args: list[str], waiting: list[str]) -> tuple[Change | None, list[str]]:
        facts = ctx.facts
        content = render_dropin(ctx.profile.name, args)
        if content == facts.dropin or (content is None and facts.dropin is None):
            return None, []
        notes: list[str] = []
        command = facts.grub_command if facts.can_run_commands else None
        if command is None:
            notes.append(f"no bootloader tool can be run here: regenerate the config yourself with {REGENERATE_HINT}")
        if not waiting:
            note = "every argument is already in force"
        elif waiting == args:
            note = "reboot to take effect"  # all of them: the line above lists them
        else:
            note = "reboot to take effect: " + " ".join(waiting)
        change = Change(
            subsystem=Subsystem.BOOTARGS, target=DROPIN_PATH, current=self.persisted(facts) or None,
            desired=args or None, effect=Effect.REBOOT if waiting else Effect.NOW, reversible=True,
            action=Action.GRUB_DROPIN, path=DROPIN_PATH, note=note,
            detail={"content": content, "regenerate": command, "pending": waiting},
        )
        return change, notes


def _dropin_apply(host: Host, change: Change, state: RunState) -> None:
    """Write the drop-in, then regenerate. If regeneration fails, the old drop-in goes back
    before the error surfaces: grub.cfg was not rebuilt, so there is nothing else to undo."""
    assert change.path is not None
    old = host.read_text(change.path)
    file_apply(host, change, state)
    try:
        _regenerate(host, change.detail.get("regenerate"))
    except RuntimeError:
        put_file(host, change.path, old)
        raise


def _dropin_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if host.read_text(path) == old:
        return
    put_file(host, path, old)
    _regenerate(host, detail.get("regenerate"))


def _regenerate(host: Host, argv: list[str] | None) -> None:
    if not argv:
        return
    result = host.run(argv)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(f"{' '.join(argv)} failed (exit {result.returncode})"
                           + (f": {detail[-1]}" if detail else ""))


DROPIN = Handler(file_before, _dropin_apply, _dropin_restore)
