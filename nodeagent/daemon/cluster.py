"""Whether the daemon publishes to Kubernetes, and the PublisherLoop when it does.

Publishing is on when asked (``--publish``), or, by default, when the daemon runs in a pod
(``KUBERNETES_SERVICE_HOST``) or is given ``--kubeconfig``. A root kubeconfig lying around on a
host running the systemd unit does not turn it on: that host's daemon must not start writing to
whatever cluster the file names.

The kubernetes client is imported only here, and only when publishing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from nodeagent.daemon.options import OptionsError, ServeOptions
from nodeagent.labels import LabelConfig

if TYPE_CHECKING:
    from nodeagent.k8s.loop import PublisherLoop


def wants_publishing(options: ServeOptions) -> bool:
    if options.publish is not None:
        return options.publish
    return bool(options.kubeconfig) or bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def open_publisher(options: ServeOptions, label_config: LabelConfig) -> PublisherLoop | None:
    """The loop for this node, not started; None when not publishing.

    Raises :class:`OptionsError` when publishing is wanted but impossible (no node name, no
    usable configuration): a DaemonSet that silently publishes nothing would look healthy.
    """
    if not wants_publishing(options):
        return None
    from nodeagent.k8s import K8sConfigError, connect, resolve_node_name
    from nodeagent.k8s.loop import LoopConfig, PublisherLoop
    from nodeagent.k8s.podresources import live_usage

    try:
        node_name = resolve_node_name(options.node_name)
        api = connect(options.kubeconfig)
    except K8sConfigError as exc:
        raise OptionsError(f"cannot publish: {exc} (or run with --no-publish)") from exc
    config = LoopConfig(backoff_max=options.api_backoff_max_s)
    return PublisherLoop(api, node_name, config=config, label_config=label_config, topology=options.topology,
                         usage_source=live_usage)
