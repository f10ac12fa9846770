"""`nodeagent check`: virt-host-validate-style host checks and workload readiness."""

from __future__ import annotations

import click

from nodeagent.commands.common import (
    CliContext,
    dump_json,
    output_option,
    profile_option,
    workload_classes_option,
    workload_table,
)


@click.command()
@output_option("text", "json")
@click.option("--for", "workload", default=None, metavar="CLASS",
              help="Also require readiness for this workload class (general, high-density, database, hpc, "
                   "ai-training, realtime, or one the workload classes in force add): not ready counts as a FAIL.")
@workload_classes_option
@profile_option(required=False, help="A NodeProfile: its spec.workloadClasses go over the workload classes.")
@click.pass_obj
def check(obj: CliContext, output: str, workload: str | None, workload_classes: str | None,
          profile_path: str | None) -> None:
    """Run the host checks (PASS/WARN/FAIL/SKIP, each with a reason and a fix).

    Exits 0 when nothing FAILed, 1 otherwise; 2 when --for names no workload class or a class document
    or profile is invalid.
    """
    from nodeagent.checks import FAIL, readiness_check, run_checks
    from nodeagent.discover import discover

    profile = None
    if profile_path:
        from nodeagent.profile import ProfileError, load_profile

        try:
            profile = load_profile(profile_path)
        except ProfileError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(2) from exc
    table = workload_table(workload_classes, profile)
    if workload is not None and workload not in table:
        raise click.BadParameter(f"{workload!r} is not a workload class (classes: {', '.join(table.names)})",
                                 param_hint="'--for'")
    inventory = discover(obj.host())
    results = run_checks(inventory)
    ready = table.readiness(inventory)
    if workload:
        results.append(readiness_check(ready[workload]))
        ready = {workload: ready[workload]}
    if output == "json":
        click.echo(dump_json({"checks": [r.to_dict() for r in results],
                              "readiness": {k: v.to_dict() for k, v in ready.items()}}))
    else:
        from nodeagent.terminal import render_checks

        click.echo(render_checks(results, ready), nl=False)
    raise SystemExit(1 if any(r.status == FAIL for r in results) else 0)


COMMANDS = [check]
