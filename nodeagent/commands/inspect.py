"""`nodeagent inspect`: the node's inventory as a topology picture, JSON or YAML."""

from __future__ import annotations

import click

from nodeagent.commands.common import CliContext, dump_json, dump_yaml, output_option


@click.command()
@output_option("text", "json", "yaml")
@click.option("--netlink", is_flag=True,
              help="Ask the kernel for NIC link state over netlink (pyroute2) instead of sysfs operstate.")
@click.pass_obj
def inspect(obj: CliContext, output: str, netlink: bool) -> None:
    """Show the node's inventory: NUMA topology, CPUs, memory, hugepages, GPUs, NICs, KVM, IOMMU."""
    from nodeagent.discover import discover

    inventory = discover(obj.host(), netlink=netlink)
    if output == "json":
        click.echo(dump_json(inventory.to_dict()))
    elif output == "yaml":
        click.echo(dump_yaml(inventory.to_dict()), nl=False)
    else:
        from nodeagent.terminal import render_topology

        click.echo(render_topology(inventory), nl=False)


COMMANDS = [inspect]
