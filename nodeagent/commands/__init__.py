"""One module per command; each exposes a click command named after its module."""

from __future__ import annotations

import click


def register_commands(group: click.Group) -> None:
    from nodeagent.commands import capture, check, inspect, labels, metrics, prep, serve

    for module in (inspect, check, labels, prep, metrics, serve, capture):
        for command in module.COMMANDS:
            group.add_command(command)
