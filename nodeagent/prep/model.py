"""The plan's vocabulary: typed Changes, refusals, skips, and the options that shape a plan.

A :class:`Change` is data, not code: it names the handler (``action``) that knows how to apply,
verify and restore it, plus everything that handler needs. That makes a change printable (plan),
executable (apply) and, once written to the journal, restorable by a later process (revert).

:class:`Subsystem` and :class:`Action` are the registry keys (:mod:`nodeagent.prep.subsystems`).
Both are string enums whose values are what the journal and the JSON output have always held, so
a journal written by an earlier version still names its handlers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from nodeagent.inventory import to_plain


class Subsystem(enum.StrEnum):
    """Who plans a change (and owns its handlers); shown in plan output and journaled."""

    HUGEPAGES = "hugepages"
    KSM = "ksm"
    GOVERNOR = "cpu-governor"
    VFIO = "vfio"
    VGPU = "vgpu"  # spec.gpu.vgpu: vGPU instances (mediated devices, SR-IOV vGPU VFs' types)
    REALTIME = "realtime"
    KUBELET = "kubelet"  # spec.kubelet: its CPU, topology and memory managers
    PERSIST = "persist"
    BOOTARGS = "bootargs"
    REBOOT = "reboot"  # kured's sentinel, after everything that may need the reboot


class Action(enum.StrEnum):
    """How a change is read, applied and restored: the key of its handler."""

    ATTR = "attr"  # one kernel attribute, written and read back
    KSM_STOP = "ksm-stop"
    KSM_RUN = "ksm-run"  # start the scanner; its restore unmerges (run=2) before stopping
    HUGEPAGES = "hugepages"
    FILE = "file"  # a file nodeagent owns, written whole or removed
    GRUB_DROPIN = "grub-dropin"
    GRUBBY = "grubby"  # BLS entries' options, through grubby --update-kernel=ALL
    KERNEL_CMDLINE = "kernel-cmdline"  # /etc/kernel/cmdline, then kernel-install add per kernel
    MODPROBE = "modprobe"
    PCI_BIND = "pci-bind"
    MDEV = "mdev"  # a mediated device: created by writing its UUID to its type's create, removed by its remove
    KUBELET_FILE = "kubelet-file"  # a kubelet config file, written whole (edited or owned), its mode kept
    KUBELET_STATE = "kubelet-state"  # a kubelet state file removed while kubelet is stopped, put back exactly


class Effect(enum.StrEnum):
    """When a change takes effect on the running node."""

    NOW = "now"
    KUBELET_RESTART = "kubelet-restart"
    REBOOT = "reboot"


def label(subsystem: str, target: str) -> str:
    """What a person calls a target, once: ``ksm run`` (not ``ksm ksm run``), ``vfio 0000:17:00.0``."""
    return target if target == subsystem or target.startswith(f"{subsystem} ") else f"{subsystem} {target}"


@dataclass(frozen=True)
class Change:
    """One setting to move from ``current`` to ``desired``.

    ``action`` selects the handler (registered by the subsystem that owns it); ``path`` is the host path it
    writes (None for multi-file actions such as a PCI rebind); ``detail`` carries handler data
    (the IOMMU group of a device, the command that regenerates grub.cfg, …).
    """

    subsystem: Subsystem
    target: str  # what a person calls it: "node0 2Mi", "0000:17:00.0", "policy2", "ksm run"
    current: Any
    desired: Any
    effect: Effect
    reversible: bool
    action: Action
    path: str | None = None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return label(self.subsystem, self.target)

    @property
    def key(self) -> str:
        """Identity of the thing changed, for merging journal entries across applies."""
        return f"{self.action}:{self.path or self.target}"

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Refusal:
    """A request that is unsafe on this node. ``forceable``: ``--force`` may override it.

    ``detail`` carries data for the renderers (``cpus``: the CPUs it concerns, so that the text
    output can group identical refusals by CPU list)."""

    subsystem: Subsystem
    target: str
    reason: str
    forceable: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return label(self.subsystem, self.target)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Skip:
    """A request left alone on purpose (no cpufreq, KubeVirt owns KSM, …); not an error."""

    subsystem: Subsystem
    target: str
    reason: str

    @property
    def label(self) -> str:
        return label(self.subsystem, self.target)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class PrepOptions:
    """How to plan and apply, beyond the profile itself (CLI flags and test knobs)."""

    force: bool = False
    allow_partial: bool = False
    boot: bool = False  # the boot-time unit: the profile is already installed
    profile_path: str | None = None  # where the profile came from (installed to /etc/nodeagent/)
    retry_interval_s: float = 1.0  # between hugepage allocation attempts
    allocation_timeout_s: float | None = None  # overrides spec.hugepages.allocationTimeoutSeconds


@dataclass
class Plan:
    """Everything ``apply`` would do, and everything it would refuse or skip."""

    profile: str
    changes: list[Change] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    forced: list[Refusal] = field(default_factory=list)  # refusals --force overrode
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pending_reboot_args: list[str] = field(default_factory=list)  # already written, not yet booted
    kubelet_restart_pending: bool = False

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    @property
    def empty(self) -> bool:
        return not self.changes

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]
