"""`nodeagent capture`: pack the host files discovery reads into a tarball for `--root` elsewhere."""

from __future__ import annotations

import click

from nodeagent.commands.common import CliContext


@click.command()
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, writable=True),
              metavar="FILE.tar.gz", help="Where to write the capture.")
@click.pass_obj
def capture(obj: CliContext, output: str) -> None:
    """Snapshot the files nodeagent reads so that `--root` on the unpacked tree reproduces `inspect`.

    Nothing secret is packed: no /proc/<pid>, no credentials, only the files discovery read; the
    values of credential-named boot arguments and the kubelet config's auth fields are redacted
    (the archive's NODEAGENT-CAPTURE.json lists them).
    """
    from nodeagent.capture import write_capture

    summary = write_capture(obj.host(), output)
    click.echo(f"wrote {output}: {summary.files} files, {summary.links} symlinks, {summary.dirs} directories")
    for path, names in sorted(summary.redacted.items()):
        click.echo(f"redacted in {path}: {', '.join(names)}")


COMMANDS = [capture]
