"""What every command shares: the CLI context (root → Host) and output helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import click

from nodeagent.host import Host, HostError


@dataclass
class CliContext:
    root: str
    live: bool | None = None

    def host(self, **kwargs: Any) -> Host:
        """The Host for --root (and --live); a bad root is a usage error (exit 2), not a traceback.

        A root without sys/ and proc/ is a bad root too: every command reads or changes a host.
        """
        kwargs.setdefault("live", self.live)
        try:
            host = Host(self.root, **kwargs)
            host.check_tree()
            return host
        except HostError as exc:
            raise click.BadParameter(str(exc), param_hint="--root") from exc


def output_option(*choices: str) -> Any:
    return click.option("-o", "--output", "output", type=click.Choice(list(choices)), default=choices[0],
                        show_default=True, help="Output format.")


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


def dump_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
