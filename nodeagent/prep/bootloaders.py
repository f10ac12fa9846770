"""Boot-argument writers for the BLS families: grubby (RHEL, Fedora with GRUB) and kernel-install (systemd-boot).

Both keep the arguments in the boot entries themselves, next to the user's own, so nodeagent
records which arguments it added (``/var/lib/nodeagent/bootargs``) and changes only those:

* grubby: ``grubby --update-kernel=ALL --args="…"`` for the arguments to add and
  ``--remove-args="…"`` for those nodeagent added before and no longer wants;
* kernel-install: ``/etc/kernel/cmdline`` (created from the running command line when absent, as
  kernel-install itself falls back to it), then ``kernel-install add VERSION IMAGE`` for every
  installed kernel, which rewrites each entry's ``options`` from that file.

The journal keeps every boot entry, ``/etc/kernel/cmdline`` and the record as they were. Revert
runs the inverse commands, then puts back any of those files that still differ, so the entries
end exactly as they were before the apply.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from nodeagent.host import Host
from nodeagent.owned import BOOTARGS_STATE_PATH, bootargs_state_args, render_bootargs_state
from nodeagent.parse import split_cmdline
from nodeagent.prep.bootfacts import BLS_DIRS, KERNEL_CMDLINE, MODULES_DIRS
from nodeagent.prep.context import PlanContext
from nodeagent.prep.facts import PrepFacts
from nodeagent.prep.handlers import Handler, RunState, put_file
from nodeagent.prep.model import Action, Change, Effect, Subsystem

# Not arguments of the kernel: the bootloader adds them (kernel-install drops them from /proc/cmdline too).
_LOADER_WORDS = ("BOOT_IMAGE=", "initrd=")


def _note(waiting: list[str], commands: list[list[str]], writes: str | None = None) -> str:
    """What the plan shows: when it takes effect, the file it writes, the exact commands it runs."""
    when = "reboot to take effect: " + " ".join(waiting) if waiting else "every argument is already in force"
    runs = " && ".join(shlex.join(c) for c in commands) or "nothing"
    return f"{when}; " + (f"{writes}; " if writes else "") + f"runs: {runs}"


def _change(writer: str, action: Action, ctx: PlanContext, args: list[str], waiting: list[str], *,
            commands: list[list[str]], restore: list[list[str]], path: str, extra: dict[str, Any]) -> Change:
    facts = ctx.facts
    return Change(
        subsystem=Subsystem.BOOTARGS, target=f"{writer} ({path})", current=bootargs_state_args(facts.bootloader.state)
        or None, desired=args or None, effect=Effect.REBOOT if waiting else Effect.NOW, reversible=True,
        action=action, path=path, note=_note(waiting, commands),
        detail={"commands": commands, "restore": restore, "pending": waiting,
                "state": render_bootargs_state(ctx.profile.name, writer, args), **extra},
    )


class Grubby:
    """A :class:`~nodeagent.prep.bootargs.BootloaderWriter` for GRUB with BLS entries, through grubby."""

    name = "grubby"

    @property
    def handlers(self) -> Mapping[Action, Handler]:
        return {Action.GRUBBY: GRUBBY}

    def detect(self, facts: PrepFacts) -> bool:
        return facts.bootloader.family() == "grubby"

    def persisted(self, facts: PrepFacts) -> list[str]:
        return bootargs_state_args(facts.bootloader.state)

    def change(self, ctx: PlanContext, args: list[str], waiting: list[str]) -> tuple[Change | None, list[str]]:
        old = self.persisted(ctx.facts)
        add = [a for a in args if a not in old]
        drop = [a for a in old if a not in args]
        if not add and not drop:
            return None, []
        tool = ctx.facts.bootloader.grubby or "grubby"
        commands = grubby_commands(tool, add, drop)
        change = _change(self.name, Action.GRUBBY, ctx, args, waiting, commands=commands,
                         restore=grubby_commands(tool, drop, add), path=BOOTARGS_STATE_PATH, extra={})
        return change, []


def grubby_commands(tool: str, add: list[str], drop: list[str]) -> list[list[str]]:
    commands = []
    if drop:
        commands.append([tool, "--update-kernel=ALL", f"--remove-args={' '.join(drop)}"])
    if add:
        commands.append([tool, "--update-kernel=ALL", f"--args={' '.join(add)}"])
    return commands


class KernelInstall:
    """A :class:`~nodeagent.prep.bootargs.BootloaderWriter` for systemd-boot: /etc/kernel/cmdline + kernel-install."""

    name = "kernel-install"

    @property
    def handlers(self) -> Mapping[Action, Handler]:
        return {Action.KERNEL_CMDLINE: KERNEL_INSTALL}

    def detect(self, facts: PrepFacts) -> bool:
        return facts.bootloader.family() == "kernel-install"

    def persisted(self, facts: PrepFacts) -> list[str]:
        return bootargs_state_args(facts.bootloader.state)

    def change(self, ctx: PlanContext, args: list[str], waiting: list[str]) -> tuple[Change | None, list[str]]:
        boot = ctx.facts.bootloader
        old = self.persisted(ctx.facts)
        if args == old:
            return None, []
        base = boot.kernel_cmdline if boot.kernel_cmdline is not None else " ".join(
            w for w in split_cmdline(ctx.inventory.kernel.cmdline) if not w.startswith(_LOADER_WORDS))
        words = [w for w in base.split() if w not in old]
        content = " ".join(words + [a for a in args if a not in words]) + "\n"
        notes = [] if boot.kernels else ["no installed kernel image found under /usr/lib/modules: "
                                         f"{KERNEL_CMDLINE} applies to the next kernel installed"]
        tool = boot.kernel_install or "kernel-install"
        commands = kernel_install_commands(tool, boot.kernels)
        change = _change(self.name, Action.KERNEL_CMDLINE, ctx, args, waiting, commands=commands,
                         restore=commands, path=KERNEL_CMDLINE, extra={"content": content})
        return replace(change, note=_note(waiting, commands, f"writes {KERNEL_CMDLINE}: {content.strip()}")), notes


def kernel_install_commands(tool: str, kernels: list[str]) -> list[list[str]]:
    return [[tool, "add", version, f"{MODULES_DIRS[0]}/{version}/vmlinuz"] for version in kernels]


# --- handlers ------------------------------------------------------------------------------------


def _snapshot(host: Host, change: Change) -> dict[str, Any]:
    """Every file the change may touch, as it is now: the journal's old value."""
    entries: dict[str, str | None] = {}
    for directory in BLS_DIRS:
        for name in host.listdir(directory):
            if name.endswith(".conf"):
                entries[f"{directory}/{name}"] = host.read_text(f"{directory}/{name}")
    return {"entries": entries, "cmdline": host.read_text(KERNEL_CMDLINE),
            "state": host.read_text(BOOTARGS_STATE_PATH)}


def _run_all(host: Host, commands: list[list[str]]) -> None:
    for argv in commands:
        result = host.run(argv)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(f"{shlex.join(argv)} failed (exit {result.returncode})"
                               + (f": {detail[-1]}" if detail else ""))


def _grubby_apply(host: Host, change: Change, state: RunState) -> None:
    _run_all(host, change.detail["commands"])
    put_file(host, BOOTARGS_STATE_PATH, change.detail.get("state"))


def _kernel_install_apply(host: Host, change: Change, state: RunState) -> None:
    put_file(host, KERNEL_CMDLINE, change.detail["content"])
    _run_all(host, change.detail["commands"])
    put_file(host, BOOTARGS_STATE_PATH, change.detail.get("state"))


def _restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    """The inverse commands (the tool's own way back), then any file still different put back."""
    if not isinstance(old, dict):
        return
    if host.read_text(KERNEL_CMDLINE) != old.get("cmdline") and "cmdline" in old:
        put_file(host, KERNEL_CMDLINE, old.get("cmdline"))
    if _differs(host, old):
        _run_all(host, detail.get("restore") or [])
    for entry, text in (old.get("entries") or {}).items():
        if text is not None and host.read_text(entry) != text:
            put_file(host, entry, text)
    if host.read_text(BOOTARGS_STATE_PATH) != old.get("state"):
        put_file(host, BOOTARGS_STATE_PATH, old.get("state"))


def _differs(host: Host, old: dict[str, Any]) -> bool:
    return any(host.read_text(entry) != text for entry, text in (old.get("entries") or {}).items())


GRUBBY = Handler(_snapshot, _grubby_apply, _restore)
KERNEL_INSTALL = Handler(_snapshot, _kernel_install_apply, _restore)
