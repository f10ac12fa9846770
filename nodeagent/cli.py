"""The ``nodeagent`` command line: the group, its global options, and the command registry.

Each command lives in ``nodeagent/commands/<name>.py`` and only parses, calls and renders; the
work is done by the modules it calls. Heavy clients (kubernetes, libvirt, NVML) are imported
inside the commands that need them, so ``nodeagent --help`` starts fast and runs without them.
"""

from __future__ import annotations

import sys

import click

from nodeagent import __version__
from nodeagent.commands.common import CliContext
from nodeagent.commands.lazy import LazyGroup
from nodeagent.lazylog import configure_when_imported

LOG_LEVELS = ["debug", "info", "warning", "error"]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--root", envvar="NODEAGENT_ROOT", default="/", show_default=True, metavar="PATH",
              help="Prefix for every host path (/sys, /proc, /dev, /etc, /boot, /var/lib, /lib/modules). "
                   "Env: NODEAGENT_ROOT.")
@click.option("--live/--no-live", envvar="NODEAGENT_LIVE", default=None,
              help="The root is this machine's own / mounted elsewhere (a DaemonSet's /host with the host's PID "
                   "namespace): use live-only sources (KVM ioctl, netlink, NVML, libvirt, udev) and run host "
                   "commands chroot-ed into it. Default: live exactly when --root is /. Env: NODEAGENT_LIVE.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="warning",
              show_default=True, help="Log verbosity (logs go to stderr).")
@click.version_option(__version__, prog_name="nodeagent")
@click.pass_context
def main(ctx: click.Context, root: str, live: bool | None, log_level: str) -> None:
    """Node agent for bare-metal KubeVirt hosts: inspect, check, label, measure and prepare a node."""
    # logging.basicConfig, applied when something first imports logging (inspect may never do).
    configure_when_imported(level=log_level.upper(), stream=sys.stderr, fmt="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CliContext(root=root, live=live)

