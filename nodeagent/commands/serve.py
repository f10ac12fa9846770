"""`nodeagent serve`: the daemon (docs/cli.md). Parses flags into ServeOptions and runs it.

Exit codes: 0 stopped by SIGTERM/SIGINT · 1 failed while running (the reconcile worker died,
the listen address could not be bound) · 2 bad flags or an impossible configuration.
"""

from __future__ import annotations

import click

from nodeagent.commands.common import CliContext, nfd_label_options, nfd_mode, workload_classes_option
from nodeagent.contract import DEFAULT_LABEL_PREFIX as DEFAULT_PREFIX


def _node_labels(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def _listen(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from nodeagent.httpserver import parse_listen

    try:
        parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@click.command()
@click.option("--listen", default=":9464", show_default=True, metavar="ADDR", envvar="NODEAGENT_LISTEN",
              callback=_listen,
              help="Address for /metrics, /healthz, /readyz: HOST:PORT, [IPV6]:PORT or :PORT (every interface). "
                   "Env: NODEAGENT_LISTEN.")
@click.option("--profiles", "profiles_dir", metavar="DIR", envvar="NODEAGENT_PROFILES",
              type=click.Path(file_okay=False),
              help="Directory of NodeProfiles (the ConfigMap mount). The first, by file name, whose nodeSelector "
                   "matches the Node is applied; none: observe only. Env: NODEAGENT_PROFILES.")
@click.option("--profiles-poll", "profiles_poll_s", type=click.FloatRange(0, 3600), default=10.0, show_default=True,
              metavar="SECONDS", help="How often to look for a changed profile directory (0: on SIGHUP only).")
@click.option("--interval", "interval_s", type=click.FloatRange(1, 86400), default=60.0, show_default=True,
              metavar="SECONDS", help="Reconcile period (jittered by ±10%).")
@click.option("--event-debounce", "debounce_s", type=click.FloatRange(0, 600), default=1.0, show_default=True,
              metavar="SECONDS", help="Quiet time after a PCI/CPU uevent before re-inventorying (bursts: at most 5 s).")
@click.option("--read-only", is_flag=True, envvar="NODEAGENT_READ_ONLY",
              help="Never write to the host: no prep, labels and metrics only (unprivileged deployments). "
                   "Env: NODEAGENT_READ_ONLY.")
@click.option("--publish/--no-publish", default=None,
              help="Publish labels, taints, NodeResourceTopology and Events to the Node. "
                   "Default: when running in a pod or given --kubeconfig.")
@click.option("--kubeconfig", metavar="FILE", type=click.Path(dir_okay=False),
              help="Kubeconfig to publish with (default: in-cluster service account, then $KUBECONFIG).")
@click.option("--node-name", envvar="NODE_NAME", metavar="NAME",
              help="The Node this agent speaks for. Env: NODE_NAME (downward API spec.nodeName).")
@click.option("--prefix", "label_prefix", envvar="NODEAGENT_LABEL_PREFIX", default=DEFAULT_PREFIX,
              show_default=True, help="Namespace of nodeagent's own labels and annotations.")
@nfd_label_options
@click.option("--topology/--no-topology", envvar="NODEAGENT_TOPOLOGY", default=True, show_default=True,
              help="Publish the NodeResourceTopology (off where nfd-topology-updater runs).")
@click.option("--api-backoff-max", "api_backoff_max_s", type=click.FloatRange(1, 3600), default=60.0,
              show_default=True, metavar="SECONDS", help="Longest wait between retries against the API server.")
@click.option("--node-label", "node_labels", multiple=True, metavar="KEY=VALUE", callback=_node_labels,
              help="Without a cluster: a label the node is taken to carry, for profile selection (repeatable).")
@click.option("--uevents", default="auto", show_default=True, metavar="auto|udev|none|spool:DIR",
              help="Where PCI/CPU device events come from: auto (udev on a live host: --root / or the global "
                   "--live), udev, none, or "
                   "spool:DIR (event files dropped in DIR; fixture roots and tests).")
@click.option("--netlink/--no-netlink", default=False, show_default=True,
              help="Read NIC link state over netlink (live root only; costs about 10 MiB of memory).")
@click.option("--libvirt-uri", "libvirt_uris", multiple=True, metavar="URI",
              help="libvirt daemon to read VMs from (repeatable). Default: the host's system daemon, if any.")
@click.option("--libvirt/--no-libvirt", "use_libvirt", default=True, show_default=True,
              help="Read VMs through libvirt.")
@click.option("--kubevirt/--no-kubevirt", default=True, show_default=True,
              help="Also read the libvirt daemon of every KubeVirt virt-launcher pod on the node.")
@click.option("--nvml/--no-nvml", default=True, show_default=True, help="Read host-driver NVIDIA GPUs through NVML.")
@click.option("--vm-metrics", type=click.Choice(["full", "complement"]), default="full", show_default=True,
              envvar="NODEAGENT_VM_METRICS",
              help="complement: leave out the per-VM series KubeVirt's virt-handler already exports for its VMs "
                   "(CPU/vCPU time and wait, memory, storage, network); keep what only nodeagent has.")
@workload_classes_option
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True,
              envvar="NODEAGENT_LOG_FORMAT", help="json: one object per line (default); text: for a terminal.")
@click.pass_context
def serve(ctx: click.Context, *, listen: str, profiles_dir: str | None, profiles_poll_s: float, interval_s: float,
          debounce_s: float, read_only: bool, publish: bool | None, kubeconfig: str | None, node_name: str | None,
          label_prefix: str, nfd_labels: str, no_nfd_labels: bool, recipe_labels: bool, topology: bool,
          api_backoff_max_s: float, node_labels: dict[str, str],
          uevents: str, netlink: bool, libvirt_uris: tuple[str, ...],
          use_libvirt: bool, kubevirt: bool, nvml: bool, vm_metrics: str, workload_classes: str | None,
          log_format: str) -> None:
    """Run the daemon: /metrics, /healthz, /readyz, periodic and event-driven reconcile, label publishing.

    SIGTERM finishes the current step and exits; SIGHUP reloads the profiles. Logs are JSON on
    stderr, at --log-level info unless given.
    """
    import logging

    from nodeagent.daemon import OptionsError, ServeOptions
    from nodeagent.daemon.jsonlog import configure_logging

    parent = ctx.parent
    level = "info"
    if parent is not None and parent.get_parameter_source("log_level") != click.core.ParameterSource.DEFAULT:
        level = str(parent.params["log_level"])
    configure_logging(level, log_format)
    try:
        options = ServeOptions(
            listen=listen, profiles_dir=profiles_dir, profiles_poll_s=profiles_poll_s, interval_s=interval_s,
            debounce_s=debounce_s, read_only=read_only, publish=publish, kubeconfig=kubeconfig, node_name=node_name,
            label_prefix=label_prefix, nfd_labels=nfd_mode(nfd_labels, no_nfd_labels), recipe_labels=recipe_labels,
            topology=topology, api_backoff_max_s=api_backoff_max_s,
            node_labels=node_labels, uevents=uevents, netlink=netlink,
            libvirt=use_libvirt, libvirt_uris=libvirt_uris, kubevirt=kubevirt, nvml=nvml, vm_metrics=vm_metrics,
            workload_classes=workload_classes)
    except OptionsError as exc:
        raise click.UsageError(str(exc)) from exc
    cli: CliContext = ctx.obj
    # --read-only: a Host in dry-run mode as well, so that even a write nobody meant is only recorded.
    host = cli.host(dry_run=read_only)
    from nodeagent.daemon.service import run

    log = logging.getLogger("nodeagent.daemon")
    try:
        code = run(host, options)
    except OptionsError as exc:
        log.error("%s", exc)
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    except OSError as exc:  # the listen address taken, a profile directory that cannot be read …
        log.error("cannot start (--listen %s): %s", listen, exc)
        ctx.exit(1)
    ctx.exit(code)


COMMANDS: list[click.Command] = [serve]
