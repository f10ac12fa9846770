"""Everything ``nodeagent serve`` can be told, in one frozen value (the CLI builds it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_LISTEN = ":9464"
"""Every interface, port 9464 (the port the OpenTelemetry Prometheus exporter registered; free of
node_exporter's 9100 and kubelet's 10250). The DaemonSet runs on the host network."""

DEFAULT_INTERVAL_S = 60.0
UEVENT_MODES = ("auto", "udev", "none")


class OptionsError(ValueError):
    """A bad combination of options; the message names the option and the accepted form."""


@dataclass(frozen=True)
class ServeOptions:
    """How the daemon runs. Times are seconds."""

    listen: str = DEFAULT_LISTEN
    profiles_dir: str | None = None  # None: observe only
    profiles_poll_s: float = 10.0  # how often the directory is checked for a changed ConfigMap; 0: SIGHUP only
    workload_classes: str | None = None  # a WorkloadClasses file (ConfigMap mount); None: the default classes
    interval_s: float = DEFAULT_INTERVAL_S
    jitter: float = 0.1  # each period is interval × [1 - jitter, 1 + jitter]
    debounce_s: float = 1.0  # quiet time after the last uevent before re-inventorying
    debounce_max_s: float = 5.0  # an event storm is still reconciled within this (or debounce_s if longer)
    read_only: bool = False
    # Kubernetes
    publish: bool | None = None  # None: publish when in a pod or given --kubeconfig
    kubeconfig: str | None = None
    node_name: str | None = None
    label_prefix: str = "nodeagent.io"
    nfd_labels: str = "auto"  # auto | on | off (labels.label_config_for)
    recipe_labels: bool = True
    topology: bool = True
    api_backoff_max_s: float = 60.0
    node_labels: Mapping[str, str] = field(default_factory=dict)  # selection without a cluster
    # Host access (whether --root is a live host is the Host's: Host(live=...), from --live)
    uevents: str = "auto"  # auto | udev | none | spool:DIR
    netlink: bool = False
    # Metrics sources
    libvirt: bool = True
    libvirt_uris: tuple[str, ...] = ()
    kubevirt: bool = True
    nvml: bool = True
    vm_metrics: str = "full"  # full | complement (see nodeagent.metrics.vm)
    # Liveness and shutdown
    stuck_after_s: float = 900.0  # /healthz fails when one reconcile step runs longer than this
    shutdown_flush_s: float = 3.0  # on SIGTERM, wait this long for queued Events to be sent

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise OptionsError(f"--interval: must be a positive number of seconds, got {self.interval_s:g}")
        if not 0 <= self.jitter < 1:
            raise OptionsError(f"jitter: must be in [0, 1), got {self.jitter:g}")
        if self.debounce_s < 0:
            raise OptionsError(f"--event-debounce: must be >= 0 seconds, got {self.debounce_s:g}")
        if self.uevents not in UEVENT_MODES and not (self.uevents.startswith("spool:") and len(self.uevents) > 6):
            raise OptionsError(f"--uevents: {self.uevents!r} is not one of {', '.join(UEVENT_MODES)} or spool:DIR")

    @property
    def debounce_cap_s(self) -> float:
        """The longest an event waits for quiet: a steady trickle must not postpone it forever."""
        return max(self.debounce_max_s, self.debounce_s)

    @property
    def spool_dir(self) -> str | None:
        return self.uevents[len("spool:"):] if self.uevents.startswith("spool:") else None
