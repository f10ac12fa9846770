"""One-shot calls for the commands that are not the daemon: publish once, read this Node's annotations."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from nodeagent.k8s.client import K8sConfigError, KubeApi, Timeouts, connect
from nodeagent.k8s.desired import DesiredState

if TYPE_CHECKING:
    from nodeagent.k8s.publisher import PublishResult

log = logging.getLogger(__name__)


# The Node label virt-handler sets when it turned KSM on (prep's KSM planner honours it).
KUBEVIRT_KSM_ENABLED_LABEL = "kubevirt.io/ksm-enabled"

def publish_once(api: KubeApi, node_name: str, desired: DesiredState, *, deadline: float = 60.0,
                 prep: tuple[bool, str] | None = None) -> PublishResult:
    """Publish ``desired`` for ``node_name`` once (retrying transient errors until ``deadline``).

    ``prep``: also send a PrepApplied (True) / PrepFailed (False) Event with that message.
    """
    from nodeagent.k8s.events import EventRecorder, prep_event
    from nodeagent.k8s.publisher import Publisher

    events = EventRecorder(node_name)
    if prep is not None:
        events.record(prep_event(*prep))
    return Publisher(api, node_name, events=events).publish(desired, deadline=deadline)


def node_annotations(node_name: str, kubeconfig: str | None = None, *,
                     api: KubeApi | None = None) -> dict[str, str] | None:
    """The annotations of ``node_name`` (plus its ``kubevirt.io/ksm-enabled`` label, when it carries one);
    None when there is no cluster configuration at all.

    One GET, no retries: ``prep`` asks this to learn whether something else manages a setting
    (``kubevirt.io/ksm-handler-managed``), and must not hang a node's boot on an unreachable API.
    When a configuration exists but the Node cannot be read, :class:`ApiError` is raised: "the
    cluster may own this setting and we could not ask" must not read as "no cluster".
    """
    try:
        client = api or connect(kubeconfig, timeouts=Timeouts(connect=3.0, request=5.0))
    except K8sConfigError as exc:
        log.info("node annotations unavailable: %s", exc)
        return None
    try:
        node = client.get_node(node_name)
    finally:
        if api is None:
            client.close()
    meta = node.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    result = {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, Mapping) else {}
    labels = meta.get("labels") or {}
    # virt-handler says it turned KSM on with a Node *label*; prep reads it beside the annotations.
    if isinstance(labels, Mapping) and KUBEVIRT_KSM_ENABLED_LABEL in labels:
        result[KUBEVIRT_KSM_ENABLED_LABEL] = str(labels[KUBEVIRT_KSM_ENABLED_LABEL])
    return result
