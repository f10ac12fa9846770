"""The daemon's own series, served next to the node's on ``/metrics``.

A collector in the shape of :class:`nodeagent.metrics.base.NodeCollector` (inline, no timeout),
so the Supervisor reports it like any other. It reads the daemon's status snapshot; the daemon
passes it in through ``build_metrics(..., extra=[...])``.

Series (all gauges unless ``_total``):

* ``nodeagent_reconciles_total{trigger}`` — reconcile steps by what started them
  (start, periodic, uevent, reload, node-labels, retry);
* ``nodeagent_reconcile_failures_total`` — steps that raised (a bug or an unexpected host error);
* ``nodeagent_reconcile_duration_seconds`` — the last step;
* ``nodeagent_last_reconcile_timestamp_seconds`` — end of the last complete step;
* ``nodeagent_uevents_total`` — relevant kernel uevents received;
* ``nodeagent_ready`` — what ``/readyz`` answers (1 ready);
* ``nodeagent_profile_selected{profile,file}`` — 1 for the applied profile (absent: observe only);
* ``nodeagent_profile_conflict`` — profiles also matching this node, ignored;
* ``nodeagent_profile_invalid{file}`` — 1 for each profile file that does not load;
* ``nodeagent_prep_state{state}`` — 1 for the current prep state (see PrepStatus).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from nodeagent.daemon.status import DaemonStatus, PrepStatus
from nodeagent.metrics.prom import CounterMetricFamily, GaugeMetricFamily, Metric


class DaemonCollector:
    name = "daemon"
    timeout_s: float | None = None

    def __init__(self, status: DaemonStatus, ready: Callable[[], bool]) -> None:
        self.status = status
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        snap = self.status.snapshot()
        reconciles = CounterMetricFamily("nodeagent_reconciles", "Reconcile steps, by what started them.",
                                         labels=["trigger"])
        for trigger, count in sorted(snap.reconciles.items()):
            reconciles.add_metric([trigger], count)
        yield reconciles
        yield CounterMetricFamily("nodeagent_reconcile_failures", "Reconcile steps that ended in an error.",
                                  value=snap.failures)
        yield GaugeMetricFamily("nodeagent_reconcile_duration_seconds", "Duration of the last reconcile step.",
                                value=snap.last_duration_s)
        if snap.last_reconcile_at is not None:
            yield GaugeMetricFamily("nodeagent_last_reconcile_timestamp_seconds",
                                    "When the last complete reconcile step ended (Unix time).",
                                    value=snap.last_reconcile_at)
        yield CounterMetricFamily("nodeagent_uevents", "Relevant kernel uevents (PCI, CPU) received.",
                                  value=snap.uevents)
        yield GaugeMetricFamily("nodeagent_ready", "1 when /readyz answers ready.", value=1.0 if self.ready() else 0.0)
        selected = GaugeMetricFamily("nodeagent_profile_selected", "1 for the profile applied to this node.",
                                     labels=["profile", "file"])
        if snap.profile is not None:
            selected.add_metric([snap.profile, snap.profile_file or ""], 1.0)
        yield selected
        yield GaugeMetricFamily("nodeagent_profile_conflict",
                                "Profiles that also select this node and are ignored (first by file name wins).",
                                value=len(snap.conflicts))
        invalid = GaugeMetricFamily("nodeagent_profile_invalid", "1 for each profile file that does not load.",
                                    labels=["file"])
        for name in sorted(snap.profile_errors):
            invalid.add_metric([name], 1.0)
        yield invalid
        prep = GaugeMetricFamily("nodeagent_prep_state", "1 for the current state of node prep.", labels=["state"])
        for state in PrepStatus:
            prep.add_metric([state], 1.0 if snap.prep_state == state else 0.0)
        yield prep
