"""`nodeagent metrics`: one Prometheus exposition of every collector, printed once.

A failing live source (libvirtd down, no NVIDIA driver) is reported in the exposition itself
(``nodeagent_collector_up{collector} 0``) and does not change the exit code: the command answers
"what would a scrape return now", and a scrape that reports a collector down is a valid answer.
"""

from __future__ import annotations

import click

from nodeagent.commands.common import CliContext, workload_classes_option, workload_table


@click.command()
@click.option("--libvirt-uri", "libvirt_uris", multiple=True, metavar="URI",
              help="libvirt daemon to read VMs from (repeatable). Default: the host's system daemon, if any.")
@click.option("--kubevirt/--no-kubevirt", default=True, show_default=True,
              help="Also read the libvirt daemon of every KubeVirt virt-launcher pod on the node.")
@click.option("--libvirt/--no-libvirt", "use_libvirt", default=True, show_default=True,
              help="Read VMs through libvirt at all.")
@click.option("--nvml/--no-nvml", default=True, show_default=True,
              help="Read host-driver NVIDIA GPUs through NVML.")
@click.option("--vm-metrics", type=click.Choice(["full", "complement"]), default="full", show_default=True,
              envvar="NODEAGENT_VM_METRICS",
              help="complement: leave out the per-VM series KubeVirt's virt-handler already exports for its VMs "
                   "(CPU/vCPU time and wait, memory, storage, network); keep what only nodeagent has.")
@click.option("--openmetrics", is_flag=True, help="Print the OpenMetrics format instead of the Prometheus text format.")
@workload_classes_option
@click.pass_obj
def metrics(obj: CliContext, *, libvirt_uris: tuple[str, ...], kubevirt: bool, use_libvirt: bool, nvml: bool,
            vm_metrics: str, openmetrics: bool, workload_classes: str | None) -> None:
    """Print one Prometheus exposition of every collector and exit.

    Live sources (libvirt, NVML, /proc of QEMU processes) are read only on the live host: --root /,
    or the global --live when the host's / is mounted at --root.
    """
    from nodeagent.discover import discover
    from nodeagent.metrics import MetricsOptions, build_metrics

    table = workload_table(workload_classes)
    host = obj.host()
    inventory = discover(host)
    options = MetricsOptions(libvirt=use_libvirt, libvirt_uris=list(libvirt_uris) or None, kubevirt=kubevirt,
                             nvml=nvml, vm_metrics=vm_metrics, workloads=lambda: table)
    node_metrics = build_metrics(lambda: inventory, host, options)
    try:
        accept = "application/openmetrics-text; version=1.0.0" if openmetrics else ""
        body, _content_type = node_metrics.exposition(accept)
    finally:
        node_metrics.close()
    click.echo(body.decode(), nl=False)


COMMANDS = [metrics]
