"""`plan`, `apply` and `revert` (docs/cli.md): parse, call prep, render, exit with the documented codes.

plan:   0 valid · 1 some request refused as unsafe · 2 invalid profile
apply:  0 converged · 1 failed, rolled back · 2 invalid input or refused · 3 applied, reboot or
        kubelet restart still needed
revert: 0 · 1
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from nodeagent.commands.common import CliContext, dump_json, output_option, profile_option
from nodeagent.host import Host

log = logging.getLogger(__name__)

PLAN_OK, PLAN_REFUSED, PLAN_INVALID = 0, 1, 2


def node_annotations(node_name: str | None) -> tuple[dict[str, str] | None, str | None]:
    """The Node's annotations (None without cluster config) and an error when a config exists
    but the Node could not be read. Imported lazily: the CLI runs without the kubernetes client."""
    if not node_name:
        return None, None
    try:
        from nodeagent.k8s import node_annotations as fetch
    except ImportError:
        return None, None
    try:
        return fetch(node_name), None
    except Exception as exc:  # any client/transport failure: planning goes on, KSM is left alone
        return None, f"{type(exc).__name__}: {exc}"


def _prepare(ctx: click.Context, profile_path: str, *, dry_run: bool, force: bool = False,
             allow_partial: bool = False, boot: bool = False, timeout: float | None = None,
             node_name: str | None = None, invalid_exit: int = PLAN_INVALID) -> tuple[Host, Any, Any]:
    """Host → Inventory → Profile → PlanContext → Plan. Exits ``invalid_exit`` on a bad profile."""
    from nodeagent.discover import discover
    from nodeagent.prep.model import PrepOptions
    from nodeagent.prep.plan import build_plan, plan_for_host
    from nodeagent.profile import ProfileError, load_profile

    cli: CliContext = ctx.obj
    host = cli.host(dry_run=dry_run)
    with host.snapshot():  # the plan reads the host files discovery read from discovery's reading
        inventory = discover(host)
        try:
            profile = load_profile(profile_path, inventory)
        except ProfileError as exc:
            click.echo(f"invalid profile: {profile_path}", err=True)
            for line in exc.errors:
                click.echo(f"  {line}", err=True)
            click.echo("nothing was written", err=True)
            ctx.exit(invalid_exit)
        annotations, error = (None, None)
        if profile.ksm is not None:
            annotations, error = node_annotations(node_name or os.environ.get("NODE_NAME") or inventory.hostname)
        options = PrepOptions(force=force, allow_partial=allow_partial, boot=boot, profile_path=profile_path,
                              allocation_timeout_s=timeout)
        pctx = plan_for_host(host, inventory, profile, options=options, annotations=annotations,
                             annotations_error=error)
        return host, pctx, build_plan(pctx)


_profile_option = profile_option(required=True, help="The NodeProfile YAML (docs/profile.md).")
_force_option = click.option("--force", is_flag=True,
                             help="Override the refusals that are safe to override: the boot VGA GPU, "
                                  "isolating every CPU, a NUMA node without housekeeping CPU; the kubelet's "
                                  "reserved CPUs isolated, a NUMA node without reserved CPU under "
                                  "single-numa-node, reservedMemory not summing to its reservations.")
_lock_option = click.option(
    "--lock-timeout", type=click.FloatRange(0, 3600), default=60.0, show_default=True, metavar="SECONDS",
    help="How long to wait for another apply or revert on this host to finish before giving up.")
DEFAULT_LOCK_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _holding_lock(ctx: click.Context, wait_s: float, busy_exit: int) -> Iterator[None]:
    """The host's apply lock, from before discovery to the end; exits ``busy_exit`` when another holds it."""
    from nodeagent.prep.lock import LockBusyError, apply_lock

    cli: CliContext = ctx.obj
    try:
        with apply_lock(cli.host(), wait_s=wait_s, on_wait=lambda message: click.echo(message, err=True)):
            yield
    except LockBusyError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(busy_exit)


_node_option = click.option("--node-name", envvar="NODE_NAME", default=None,
                            help="Kubernetes Node name, for its annotations (default: env NODE_NAME, hostname).")


@click.command("plan")
@_profile_option
@output_option("text", "json")
@_force_option
@_node_option
@click.pass_context
def plan_command(ctx: click.Context, *, profile_path: str, output: str, force: bool,
                 node_name: str | None) -> None:
    """Show what `apply` would change: current -> desired, and when each takes effect."""
    from nodeagent.prep.summary import plan_text

    _, _, plan = _prepare(ctx, profile_path, dry_run=True, force=force, node_name=node_name)
    click.echo(dump_json(plan.to_dict()) if output == "json" else plan_text(plan))
    ctx.exit(PLAN_REFUSED if plan.refused else PLAN_OK)


@click.command("apply")
@_profile_option
@click.option("--dry-run", is_flag=True, help="Run the whole apply against a recording host: print the writes.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_force_option
@click.option("--allow-partial", is_flag=True,
              help="Keep a short hugepage allocation instead of rolling the apply back.")
@click.option("--boot", is_flag=True,
              help="Boot mode (nodeagent-prep.service): implies --yes, exits 0 when only a reboot or "
                   "kubelet restart is pending.")
@click.option("--hugepage-timeout", type=click.FloatRange(0, 3600), default=None, metavar="SECONDS",
              help="Retry budget for a short hugepage allocation (default: the profile's, 60 s).")
@output_option("text", "json")
@_node_option
@_lock_option
@click.pass_context
def apply_command(ctx: click.Context, *, profile_path: str, dry_run: bool, yes: bool, force: bool,
                  allow_partial: bool, boot: bool, hugepage_timeout: float | None, output: str,
                  node_name: str | None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
    """Make the runtime changes, write boot-time persistence, journal every old value.

    The host's apply lock is taken before discovery (a dry run takes none): the plan is made from
    the host as it is while no other apply can change it.
    """
    from nodeagent.prep.apply import EXIT_REFUSED

    options = {"profile_path": profile_path, "dry_run": dry_run, "yes": yes, "force": force,
               "allow_partial": allow_partial, "boot": boot, "hugepage_timeout": hugepage_timeout,
               "output": output, "node_name": node_name}
    if dry_run:
        _apply(ctx, **options)
        return
    with _holding_lock(ctx, lock_timeout, EXIT_REFUSED):
        _apply(ctx, **options)


def _apply(ctx: click.Context, *, profile_path: str, dry_run: bool, yes: bool, force: bool, allow_partial: bool,
           boot: bool, hugepage_timeout: float | None, output: str, node_name: str | None) -> None:
    from nodeagent.prep.apply import EXIT_CONVERGED, EXIT_PENDING, EXIT_REFUSED, execute
    from nodeagent.prep.summary import apply_text, plan_text

    host, pctx, plan = _prepare(ctx, profile_path, dry_run=dry_run, force=force, allow_partial=allow_partial,
                                boot=boot, timeout=hugepage_timeout, node_name=node_name)
    if plan.changes and not plan.refusals and not (dry_run or yes or boot):
        if not sys.stdin.isatty():
            click.echo(plan_text(plan), err=True)
            click.echo("refusing to change the host without confirmation: pass --yes", err=True)
            ctx.exit(EXIT_REFUSED)
        click.echo(plan_text(plan))
        if not click.confirm("apply these changes?", default=False):
            click.echo("nothing was written")
            ctx.exit(EXIT_REFUSED)
    result = execute(plan, pctx, host)
    click.echo(dump_json(result.to_dict()) if output == "json" else apply_text(result))
    code = result.exit_code
    if boot and code == EXIT_PENDING:
        log.warning("boot mode: %s", "; ".join(result.messages) or "reboot or kubelet restart pending")
        code = EXIT_CONVERGED
    ctx.exit(code)


@click.command("revert")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output_option("text", "json")
@_lock_option
@click.pass_context
def revert_command(ctx: click.Context, yes: bool, output: str, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
    """Restore every value recorded in the journal (/var/lib/nodeagent/journal.json)."""
    with _holding_lock(ctx, lock_timeout, 1):
        _revert(ctx, yes, output)


def _revert(ctx: click.Context, yes: bool, output: str) -> None:
    from nodeagent.prep.apply import revert
    from nodeagent.prep.journal import Journal, JournalError
    from nodeagent.prep.model import label
    from nodeagent.prep.summary import revert_text

    cli: CliContext = ctx.obj
    host = cli.host()
    if not yes:
        try:
            journal = Journal.load(host, strict=False)
        except JournalError as exc:
            click.echo(str(exc), err=True)
            ctx.exit(1)
        if journal.entries:
            if not sys.stdin.isatty():
                click.echo("refusing to revert without confirmation: pass --yes", err=True)
                ctx.exit(1)
            for index, entry in enumerate(journal.entries):
                if index in journal.invalid:
                    click.echo(f"  entry {index + 1}: malformed ({journal.invalid[index]}): kept, not restored")
                else:
                    name = label(str(entry.get("subsystem")), str(entry.get("target")))
                    click.echo(f"  {name}: back to {entry.get('old')!r}")
            if not click.confirm(f"restore these {len(journal.entries) - len(journal.invalid)} values?",
                                 default=False):
                ctx.exit(1)
    result = revert(host)
    click.echo(dump_json(result.to_dict()) if output == "json" else revert_text(result))
    ctx.exit(result.exit_code)


COMMANDS: list[click.Command] = [plan_command, apply_command, revert_command]
