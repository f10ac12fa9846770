"""Which bootloader family a host boots through, from its files (read once, before planning).

Boot arguments only reach the kernel when they are written where the host's bootloader family
reads them, and every family reads them somewhere else:

* ``grub`` (Debian, Ubuntu): os-release ID/ID_LIKE debian or ubuntu, ``update-grub``. Arguments
  live in ``/etc/default/grub.d/*.cfg`` (Debian's grub-mkconfig sources it): nodeagent's drop-in,
  then ``update-grub``.
* ``grubby`` (RHEL, Fedora, CentOS Stream with GRUB): ``grubby``, BLS entries in
  ``/boot/loader/entries``, ``GRUB_ENABLE_BLSCFG`` not false. Arguments live in each entry's
  ``options`` line: ``grubby --update-kernel=ALL --args/--remove-args``.
* ``kernel-install`` (systemd-boot, UKI layouts): ``loader/loader.conf`` on the ESP, or
  ``/etc/kernel/cmdline``, and ``kernel-install``. Arguments live in ``/etc/kernel/cmdline``: the
  file, then ``kernel-install add`` per installed kernel.

RHEL's and SUSE's ``grub2-mkconfig`` do not read ``/etc/default/grub.d``, and BLS entries carry
their own ``options``: a drop-in there would never reach the kernel. Anything else is unknown, and
planning boot arguments on it is refused rather than written where nothing reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nodeagent.host import Host
from nodeagent.owned import BOOTARGS_STATE_PATH

BLS_DIRS = ("/boot/loader/entries", "/boot/efi/loader/entries", "/efi/loader/entries")
LOADER_CONFS = ("/boot/efi/loader/loader.conf", "/efi/loader/loader.conf", "/boot/loader/loader.conf")
KERNEL_CMDLINE = "/etc/kernel/cmdline"
GRUB_DEFAULT = "/etc/default/grub"
MODULES_DIRS = ("/usr/lib/modules", "/lib/modules")
_BLSCFG = re.compile(r'^\s*GRUB_ENABLE_BLSCFG\s*=\s*"?(true|false)"?\s*$', re.MULTILINE)


@dataclass
class BootloaderFacts:
    os_id: str | None = None
    os_like: list[str] = field(default_factory=list)
    os_name: str | None = None
    grubby: str | None = None  # the tool's host path
    kernel_install: str | None = None
    update_grub: bool = False
    grub_default: str | None = None  # /etc/default/grub
    blscfg: bool | None = None  # GRUB_ENABLE_BLSCFG (None: not set)
    entries: dict[str, str] = field(default_factory=dict)  # BLS entry path → content
    loader_conf: str | None = None  # the ESP's loader/loader.conf (systemd-boot)
    kernel_cmdline: str | None = None  # /etc/kernel/cmdline
    kernels: list[str] = field(default_factory=list)  # versions with a vmlinuz under /usr/lib/modules
    state: str | None = None  # nodeagent's record of the arguments it persisted (grubby, kernel-install)

    @property
    def debian_like(self) -> bool:
        return bool({"debian", "ubuntu"} & {self.os_id or "", *self.os_like})

    def family(self) -> str | None:
        """``grub``, ``grubby``, ``kernel-install``, or None when no family is recognised."""
        if self.loader_conf is not None and self.kernel_install:
            return "kernel-install"
        if self.grubby and self.entries and self.blscfg is not False:
            return "grubby"
        if self.debian_like or self.update_grub:
            return "grub"
        if self.kernel_cmdline is not None and self.kernel_install:
            return "kernel-install"
        return None

    def evidence(self) -> str:
        """What was found, for a refusal that says why no family was recognised."""
        found = [f"os-release ID={self.os_id or 'none'}"]
        found.append(f"grubby {'at ' + self.grubby if self.grubby else 'absent'}")
        found.append(f"{len(self.entries)} BLS entr{'y' if len(self.entries) == 1 else 'ies'}")
        found.append("GRUB_ENABLE_BLSCFG " + {True: "true", False: "false", None: "unset"}[self.blscfg])
        found.append(f"kernel-install {'present' if self.kernel_install else 'absent'}")
        found.append(f"{KERNEL_CMDLINE} {'present' if self.kernel_cmdline is not None else 'absent'}")
        found.append(f"systemd-boot loader.conf {'present' if self.loader_conf is not None else 'absent'}")
        return ", ".join(found)


def read_bootloader(host: Host) -> BootloaderFacts:
    facts = BootloaderFacts()
    os_release = _os_release(host.read_text("/etc/os-release") or host.read_text("/usr/lib/os-release") or "")
    facts.os_id = os_release.get("ID")
    facts.os_like = os_release.get("ID_LIKE", "").split()
    facts.os_name = os_release.get("PRETTY_NAME") or os_release.get("NAME")
    facts.grubby = host.which("grubby")
    facts.kernel_install = host.which("kernel-install")
    facts.update_grub = host.which("update-grub") is not None
    facts.grub_default = host.read_text(GRUB_DEFAULT)
    match = _BLSCFG.findall(facts.grub_default or "")
    facts.blscfg = None if not match else match[-1] == "true"
    for directory in BLS_DIRS:
        for name in host.listdir(directory):
            if name.endswith(".conf"):
                text = host.read_text(f"{directory}/{name}")
                if text is not None:
                    facts.entries[f"{directory}/{name}"] = text
    facts.loader_conf = next((t for t in (host.read_text(p) for p in LOADER_CONFS) if t is not None), None)
    facts.kernel_cmdline = host.read_text(KERNEL_CMDLINE)
    facts.kernels = installed_kernels(host)
    facts.state = host.read_text(BOOTARGS_STATE_PATH)
    return facts


def installed_kernels(host: Host) -> list[str]:
    """Kernel versions that ship their image in the modules directory (kernel-install's input)."""
    for directory in MODULES_DIRS:
        versions = [v for v in host.listdir(directory) if host.exists(f"{directory}/{v}/vmlinuz")]
        if versions:
            return versions
    return []


def _os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("\"'")
    return values


def entry_options(text: str) -> list[str]:
    """The ``options`` words of a BLS entry (grubby and kernel-install both write one such line)."""
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "options":
            return value.split()
    return []
