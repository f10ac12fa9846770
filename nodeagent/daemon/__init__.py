"""``nodeagent serve``: the long-running agent behind the DaemonSet and the systemd unit.

Modules, each with one reason to change:

=============  ==============================================================================
service        the threads, wake-ups (period, uevents, reload, Node labels), signals, shutdown
reconcile      one step: inventory → profile selection → prep → publication
prep_runner    the ``apply`` code path driven from a loop: back-off, Event de-duplication
profiles       the ConfigMap directory: loading, last-known-good reloads, nodeSelector matching
uevents        kernel uevents (pyudev), the spool source for fixture roots, the debouncer
health         ``/healthz`` and ``/readyz``
status         the shared state those and the self-metrics read
collector      the daemon's own series (``nodeagent_reconciles_total`` and friends) on ``/metrics``
cluster        whether to publish, and the PublisherLoop
jsonlog        one JSON object per log line
heap           start-up's freed C heap handed back to the kernel (``malloc_trim``)
options        :class:`ServeOptions`
=============  ==============================================================================
"""

from __future__ import annotations

from nodeagent.daemon.options import OptionsError, ServeOptions

__all__ = ["OptionsError", "ServeOptions"]
