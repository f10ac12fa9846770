"""Kubernetes publishing: Node labels and taints, NodeResourceTopology, Events.

The only package that imports ``kubernetes``, and only inside :mod:`nodeagent.k8s.client`'s
functions: importing ``nodeagent.k8s`` (or its pure parts — :mod:`.nodediff`, :mod:`.topology`,
:mod:`.desired`) never loads the client.

Entry points:

* :func:`~nodeagent.k8s.oneshot.publish_once` — ``nodeagent labels --publish``;
* :class:`~nodeagent.k8s.loop.PublisherLoop` — what ``serve`` drives (start/stop, ``synced``,
  ``update(inventory, profile)``, ``report_prep(ok, message)``);
* :func:`~nodeagent.k8s.oneshot.node_annotations` — the prep command's look at its own Node.
"""

from __future__ import annotations

from nodeagent.k8s.client import ApiError, K8sConfigError, KubeApi, connect, resolve_node_name
from nodeagent.k8s.desired import DesiredState, desired_state
from nodeagent.k8s.oneshot import node_annotations, publish_once

__all__ = ["ApiError", "DesiredState", "K8sConfigError", "KubeApi", "connect", "desired_state",
           "node_annotations", "publish_once", "resolve_node_name"]
