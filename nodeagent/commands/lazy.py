"""The CLI's group: it imports a command's module on first use (see the package docstring)."""

from __future__ import annotations

import importlib

import click

# command name → the module under nodeagent.commands that defines it
COMMAND_MODULES = {
    "inspect": "inspect",
    "check": "check",
    "labels": "labels",
    "plan": "prep",
    "apply": "prep",
    "revert": "prep",
    "metrics": "metrics",
    "serve": "serve",
    "capture": "capture",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"nodeagent.commands.{module_name}")
        return next((c for c in module.COMMANDS if c.name == cmd_name), None)
