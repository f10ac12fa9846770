"""The files nodeagent owns on a host, named once, and the format of its grub drop-in.

Prep writes these files; discovery reads them back (is a reboot or a kubelet restart pending?).
They are host facts, so they live below both: discovery never imports prep.

The drop-in's text is written by :func:`render_dropin`, read back by :func:`dropin_args` and
compared with ``/proc/cmdline`` by :func:`pending` — one home for the line format.
"""

from __future__ import annotations

from nodeagent.parse import cmdline_params, parse_page_size_kb, split_cmdline

DROPIN_PATH = "/etc/default/grub.d/90-nodeagent.cfg"
MODPROBE_PATH = "/etc/modprobe.d/90-nodeagent-vfio.conf"
PROFILE_PATH = "/etc/nodeagent/profile.yaml"
JOURNAL_PATH = "/var/lib/nodeagent/journal.json"
# Where the bootloader keeps the arguments in the entries themselves (grubby, kernel-install), the
# arguments nodeagent added are recorded here, so that a later plan knows which ones are its own.
BOOTARGS_STATE_PATH = "/var/lib/nodeagent/bootargs"
LOCK_PATH = "/var/lib/nodeagent/apply.lock"
# The kubelet's state files an apply could not remove while kubelet ran (spec.kubelet changed its CPU or
# memory manager): removed by the boot unit, or the next apply, before kubelet starts again.
KUBELET_STATE_PENDING_PATH = "/var/lib/nodeagent/kubelet-state-pending.json"

REGENERATE_HINT = "update-grub (Debian/Ubuntu) or grub2-mkconfig -o /boot/grub2/grub.cfg (RHEL/Fedora/SUSE)"
_LINE_PREFIX = 'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} '


def dropin_args(text: str | None) -> list[str]:
    """The arguments a nodeagent drop-in appends (empty when there is none)."""
    if not text:
        return []
    for line in text.splitlines():
        if line.startswith(_LINE_PREFIX) and line.endswith('"'):
            return line[len(_LINE_PREFIX):-1].split()
    return []


def render_bootargs_state(profile_name: str, family: str, args: list[str]) -> str | None:
    """The record of the arguments nodeagent persisted through ``family`` (None: there are none)."""
    if not args:
        return None
    return (f"# Kernel arguments nodeagent (profile {profile_name}) added through {family}; "
            "`nodeagent revert` removes them.\n" + " ".join(args) + "\n")


def bootargs_state_args(text: str | None) -> list[str]:
    """The arguments a :func:`render_bootargs_state` record holds (empty when there is none)."""
    lines = [line for line in (text or "").splitlines() if line.strip() and not line.startswith("#")]
    return lines[0].split() if lines else []


def persisted_args(dropin: str | None, state: str | None) -> list[str]:
    """Every argument nodeagent persisted, whichever bootloader family holds them."""
    args = dropin_args(dropin)
    return args + [a for a in bootargs_state_args(state) if a not in args]


def render_dropin(profile_name: str, args: list[str]) -> str | None:
    if not args:
        return None
    return (f"# Managed by nodeagent (profile {profile_name}). `nodeagent revert` removes it; do not edit.\n"
            f"# After a change, the bootloader config is regenerated: {REGENERATE_HINT}.\n"
            f"{_LINE_PREFIX}{' '.join(args)}\"\n")


def hugepage_sizes(args: list[str]) -> set[int]:
    """Page sizes (kB) the drop-in already reserves at boot: they stay boot-time reservations."""
    sizes: set[int] = set()
    for arg in args:
        if arg.startswith("hugepagesz="):
            try:
                sizes.add(parse_page_size_kb(arg.split("=", 1)[1]))
            except ValueError:
                continue
    return sizes


def pending(args: list[str], cmdline: str) -> list[str]:
    """The drop-in's arguments the running kernel was not booted with."""
    words = split_cmdline(cmdline)
    params = cmdline_params(cmdline)
    booted_pages = _hugepage_pairs(words)
    missing: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("hugepagesz=") and index + 1 < len(args) and args[index + 1].startswith("hugepages="):
            size, count = arg.split("=", 1)[1], args[index + 1].split("=", 1)[1]
            if booted_pages.get(size) != count:
                missing += [arg, args[index + 1]]
            index += 2
            continue
        key, sep, value = arg.partition("=")
        if key not in params or (params[key] if sep else None) != (value if sep else None):
            missing.append(arg)
        index += 1
    return missing


def _hugepage_pairs(words: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    size: str | None = None
    for word in words:
        if word.startswith("hugepagesz="):
            size = word.split("=", 1)[1]
        elif word.startswith("hugepages=") and size is not None:
            pairs[size] = word.split("=", 1)[1]
            size = None
    return pairs
