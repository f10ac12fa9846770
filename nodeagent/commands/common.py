"""What every command shares: the CLI context (root → Host) and output helpers."""

from __future__ import annotations

from typing import Any

import click

from nodeagent.host import Host, HostError
from nodeagent.value import mutable


@mutable
class CliContext:
    """The global options every command gets (``--root``, ``--live``)."""

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


class _HiddenAliasOption(click.Option):
    """An option whose old long names still parse but are left out of ``--help``."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = hidden_aliases

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = self.opts
        self.opts = [o for o in shown if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown

    def get_error_hint(self, ctx: click.Context) -> str:
        return " / ".join(f"'{o}'" for o in self.opts if o not in self.hidden_aliases)


def profile_option(*, required: bool, help: str) -> Any:
    """``-f/--profile PROFILE``, one name for every command that reads a profile; ``--filename``
    (what plan and apply called it first) still works."""
    return click.option("-f", "--profile", "--filename", "profile_path", cls=_HiddenAliasOption,
                        hidden_aliases=("--filename",), required=required, metavar="PROFILE",
                        type=click.Path(dir_okay=False), help=help)


def output_option(*choices: str) -> Any:
    return click.option("-o", "--output", "output", type=click.Choice(list(choices)), default=choices[0],
                        show_default=True, help="Output format.")


def dump_json(data: Any) -> str:
    """``json.dumps(data, indent=2)``, byte for byte (nodeagent.jsontext: a fraction of the cost)."""
    from nodeagent.jsontext import dumps_indented

    return dumps_indented(data)


def dump_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


_NFD_MODES = {"auto": "auto", "on": "on", "off": "off", "true": "on", "false": "off", "1": "on", "0": "off",
              "yes": "on", "no": "off"}


def _nfd_mode(ctx: click.Context, param: click.Parameter, value: Any) -> str:
    mode = _NFD_MODES.get(str(value).strip().lower())
    if mode is None:
        raise click.BadParameter(f"{value!r} is not one of auto, on, off")
    return mode


def nfd_label_options(command: Any) -> Any:
    """``--nfd-labels=auto|on|off`` (bare: on), ``--no-nfd-labels`` (= off), ``--recipe-labels/--no-recipe-labels``."""
    command = click.option(
        "--recipe-labels/--no-recipe-labels", envvar="NODEAGENT_RECIPE_LABELS", default=True, show_default=True,
        help="Publish the recipe-compatible keys no upstream project defines (feature.node.kubernetes.io/numa, "
             "cpu-cpuid.RTSCHED, topology.kubernetes.io/numa-nodes, realtime); their nodeagent.io/ mirrors stay. "
             "Env: NODEAGENT_RECIPE_LABELS.")(command)
    command = click.option("--no-nfd-labels", "no_nfd_labels", is_flag=True,
                           help="Same as --nfd-labels=off.")(command)
    return click.option(
        "--nfd-labels", "nfd_labels", envvar="NODEAGENT_NFD_LABELS", default="auto", show_default=True,
        is_flag=False, flag_value="on", metavar="auto|on|off", callback=_nfd_mode,
        help="The labels node-feature-discovery itself publishes: auto leaves them to NFD where the Node shows "
             "NFD at work (its feature-labels annotation or NodeFeature objects), on always publishes them, off "
             "never. Env: NODEAGENT_NFD_LABELS.")(command)


def nfd_mode(nfd_labels: str, no_nfd_labels: bool) -> str:
    """The mode the two NFD options say together."""
    return "off" if no_nfd_labels else nfd_labels


def workload_classes_option(command: Any) -> Any:
    """``--workload-classes FILE``: a WorkloadClasses document laid over the default workload classes."""
    return click.option(
        "--workload-classes", "workload_classes", metavar="FILE", envvar="NODEAGENT_WORKLOAD_CLASSES",
        type=click.Path(dir_okay=False),
        help="A WorkloadClasses document (kind: WorkloadClasses) that overrides or adds workload classes: "
             "readiness, its ready-<class> labels, metrics and check --for follow it (a profile's "
             "spec.workloadClasses go on top). Env: NODEAGENT_WORKLOAD_CLASSES.")(command)


def workload_table(path: str | None, profile: Any = None, *, base: Any = None) -> Any:
    """The workload classes in force: the defaults (or ``base``), the ``--workload-classes`` file, the profile's.

    An invalid document is refused with every problem named, exit 2, before anything is read or written.
    """
    from nodeagent.workloads import WorkloadClassesError, load_workload_classes, table_for

    try:
        if path:
            base = load_workload_classes(path, base)
        return table_for(base, profile)
    except WorkloadClassesError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from exc
