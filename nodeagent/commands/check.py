"""`nodeagent check`: virt-host-validate-style host checks and workload readiness."""

from __future__ import annotations

import click

from nodeagent.commands.common import CliContext, dump_json, output_option
from nodeagent.contract import WORKLOADS


@click.command()
@output_option("text", "json")
@click.option("--for", "workload", type=click.Choice(WORKLOADS), default=None,
              help="Also require readiness for this workload: not ready counts as a FAIL.")
@click.pass_obj
def check(obj: CliContext, output: str, workload: str | None) -> None:
    """Run the host checks (PASS/WARN/FAIL/SKIP, each with a reason and a fix).

    Exits 0 when nothing FAILed, 1 otherwise.
    """
    from nodeagent.checks import FAIL, readiness, readiness_check, run_checks
    from nodeagent.discover import discover

    inventory = discover(obj.host())
    results = run_checks(inventory)
    ready = readiness(inventory)
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
