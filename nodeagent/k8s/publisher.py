"""Bring one Node (labels, taints) and its NodeResourceTopology to the desired state — no threads.

:class:`Publisher` holds the write logic the one-shot ``nodeagent labels --publish`` and the
:class:`~nodeagent.k8s.loop.PublisherLoop` share:

* a Node is patched only with the difference (:func:`~nodeagent.k8s.nodediff.node_patch`); when
  there is none, nothing is sent;
* a 409 (the Node changed under a taint update, or a NodeResourceTopology replace raced) is
  answered by re-reading and recomputing, a bounded number of times;
* the NodeResourceTopology is compared with the last one written and sent only when it changed;
  ``verify`` re-reads it from the API server to catch someone else's edit or deletion.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nodeagent.backoff import Backoff
from nodeagent.inventory import Plain
from nodeagent.k8s.client import ApiError, KubeApi
from nodeagent.k8s.desired import DesiredState
from nodeagent.k8s.events import EventRecorder, readiness_event
from nodeagent.k8s.nodediff import NodeView, changed_labels, node_patch
from nodeagent.k8s.topology import MANAGED_BY, MANAGED_BY_LABEL, is_managed, topology_content
from nodeagent.labels import nfd_detected, nfd_listed_labels, nfd_owned_keys

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 8

# What sync_topology reports.
TOPOLOGY_DISABLED = "disabled"  # not managed (turned off, or the node has no NUMA information)
TOPOLOGY_CREATED = "created"
TOPOLOGY_UPDATED = "updated"
TOPOLOGY_UNCHANGED = "unchanged"
TOPOLOGY_FOREIGN = "foreign"  # an object of that name written by someone else (nfd-topology-updater)
TOPOLOGY_UNAVAILABLE = "unavailable"  # the NodeResourceTopology CRD is not installed


class ConflictError(ApiError):
    """Still conflicting after :data:`MAX_CONFLICT_RETRIES` re-reads."""


@dataclass
class PublishResult(Plain):
    node: str
    node_patched: bool
    topology: str
    events_sent: int
    attempts: int


class Publisher:
    """Writes one node's desired state; remembers what it wrote so that it can skip rewriting it."""

    def __init__(self, api: KubeApi, node_name: str, *, events: EventRecorder | None = None) -> None:
        self.api = api
        self.node_name = node_name
        self.events = events or EventRecorder(node_name)
        self._topology_written: dict[str, Any] | None = None
        self._foreign_warned = False
        self._node_features: bool | None = None  # NFD NodeFeature objects name this node (looked up once)
        self.writes = 0  # PATCH/PUT/POST of the Node and its topology (events not counted)

    # --- the Node ----------------------------------------------------------------------------

    def sync_node(self, node: NodeView | None, desired: DesiredState) -> tuple[NodeView, bool]:
        """Patch ``node`` (None: read it first) until it carries ``desired``.

        Returns the Node as it is afterwards and whether a patch was sent.
        """
        for _ in range(MAX_CONFLICT_RETRIES + 1):
            if node is None:
                node = NodeView.from_api(self.api.get_node(self.node_name))
            labels, handed_over = self._labels_beside_nfd(node, desired)
            patch = node_patch(node, labels, list(desired.taints), desired.label_config, handed_over=handed_over)
            if patch is None:
                return node, False
            transitions = changed_labels(node, labels, list(desired.readiness_keys))
            try:
                updated = NodeView.from_api(self.api.patch_node(self.node_name, patch))
            except ApiError as exc:
                if exc.conflict:
                    log.info("node %s changed while patching its taints; re-reading", self.node_name)
                    node = None
                    continue
                raise
            self.writes += 1
            log.info("node %s patched: %s", self.node_name, _summary(patch))
            self._record_readiness(transitions, desired)
            return updated, True
        raise ConflictError(f"patch node {self.node_name}: still conflicting after {MAX_CONFLICT_RETRIES} retries", 409)

    def _labels_beside_nfd(self, node: NodeView,
                           desired: DesiredState) -> tuple[dict[str, str], frozenset[str]]:
        """``--nfd-labels=auto``: where NFD runs, its own keys are left to it.

        Returns the labels to publish and the keys handed over to NFD: those NFD lists as its own on
        this Node (or all of them when only its NodeFeature objects show it runs) stay as NFD wrote
        them; one nodeagent wrote that NFD does not publish here (``memory-numa=false``) is removed.
        """
        labels = dict(desired.labels)
        if not (desired.label_config.nfd_auto and desired.label_config.nfd_compatible):
            return labels, frozenset()
        listed = nfd_listed_labels(node.annotations)
        if listed is None:
            if self._node_features is None:
                self._node_features = self._look_for_node_features()
            if not nfd_detected(node.annotations, node_features=self._node_features):
                return labels, frozenset()
        nfd_keys = nfd_owned_keys()
        for key in nfd_keys:
            labels.pop(key, None)
        return labels, frozenset(nfd_keys if listed is None else nfd_keys & listed)

    def _look_for_node_features(self) -> bool:
        try:
            return self.api.node_features_exist(self.node_name)
        except ApiError as exc:
            if exc.retryable:
                raise
            log.warning("cannot list NFD NodeFeature objects (%s); NFD detected by its Node annotation only", exc)
            return False

    def _record_readiness(self, transitions: dict[str, tuple[str | None, str]], desired: DesiredState) -> None:
        """An Event per workload whose readiness label flipped (not for a first publication)."""
        workloads = desired.readiness_keys
        for key, (old, new) in sorted(transitions.items()):
            if old is None or old == new:
                continue
            workload = workloads[key]
            self.events.record(readiness_event(workload, new == "true", desired.readiness.get(workload, ())))

    # --- the NodeResourceTopology -------------------------------------------------------------

    def sync_topology(self, desired: DesiredState, node_uid: str | None, *, verify: bool = False) -> str:
        """Create or replace the node's NodeResourceTopology when it differs from ``desired``.

        Without ``verify``, a topology equal to the one this publisher last wrote costs no request.
        """
        if desired.topology is None:
            return TOPOLOGY_DISABLED
        body = copy.deepcopy(dict(desired.topology))
        if node_uid:
            body["metadata"]["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": node_uid}]
        content = topology_content(body)
        if not verify and self._topology_written == content:
            return TOPOLOGY_UNCHANGED
        for _ in range(MAX_CONFLICT_RETRIES + 1):
            existing = self._get_topology()
            if existing is None:
                try:
                    self.api.create_topology(body)
                except ApiError as exc:
                    if exc.conflict:  # created meanwhile (AlreadyExists): look again
                        continue
                    if exc.not_found:
                        self._topology_written = content  # do not retry before the next verify
                        log.warning("NodeResourceTopology CRD (topology.node.k8s.io/v1alpha2) is not installed; "
                                    "apply daemonset/crds/ or turn topology publishing off")
                        return TOPOLOGY_UNAVAILABLE
                    raise
                self.writes += 1
                self._topology_written = content
                return TOPOLOGY_CREATED
            if not is_managed(existing):
                self._topology_written = content
                if not self._foreign_warned:
                    log.warning("NodeResourceTopology %s is not labelled %s=%s (nfd-topology-updater's?); "
                                "leaving it alone", self.node_name, MANAGED_BY_LABEL, MANAGED_BY)
                    self._foreign_warned = True
                return TOPOLOGY_FOREIGN
            if topology_content(existing) == content:
                self._topology_written = content
                return TOPOLOGY_UNCHANGED
            replacement = _keep_foreign_metadata(body, existing)
            try:
                self.api.replace_topology(self.node_name, replacement)
            except ApiError as exc:
                if exc.conflict:
                    continue
                raise
            self.writes += 1
            self._topology_written = content
            return TOPOLOGY_UPDATED
        raise ConflictError(f"noderesourcetopology {self.node_name}: still conflicting", 409)

    def _get_topology(self) -> dict[str, Any] | None:
        try:
            return self.api.get_topology(self.node_name)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    # --- one shot ----------------------------------------------------------------------------

    def publish(self, desired: DesiredState, *, deadline: float = 60.0, backoff: Backoff | None = None,
                sleep: Callable[[float], None] = time.sleep) -> PublishResult:
        """Read the Node, patch it, write the topology, send queued events; retry transient errors.

        Gives up (raising the last :class:`ApiError`) on a non-transient error or after ``deadline``
        seconds.
        """
        backoff = backoff or Backoff()
        give_up_at = time.monotonic() + deadline
        attempts = 0
        while True:
            attempts += 1
            try:
                node, patched = self.sync_node(None, desired)
                topology = self.sync_topology(desired, node.uid, verify=True)
                sent_before = self.events.sent
                self.events.flush(self.api, node.uid)
                return PublishResult(self.node_name, patched, topology, self.events.sent - sent_before, attempts)
            except ApiError as exc:
                delay = max(backoff.next_delay(), exc.retry_after or 0.0)
                if not exc.retryable or time.monotonic() + delay > give_up_at:
                    raise
                log.warning("publish for node %s failed (%s); retrying in %.1fs", self.node_name, exc, delay)
                sleep(delay)


def _keep_foreign_metadata(body: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any]:
    """Our replacement, carrying the resourceVersion read and any labels/annotations others added."""
    replacement = copy.deepcopy(body)
    meta = replacement["metadata"]
    old = existing.get("metadata") or {}
    meta["resourceVersion"] = old.get("resourceVersion")
    meta["labels"] = {**(old.get("labels") or {}), **(meta.get("labels") or {})}
    if old.get("annotations"):
        meta["annotations"] = dict(old["annotations"])
    return replacement


def _summary(patch: dict[str, Any]) -> str:
    meta = patch.get("metadata", {})
    labels = meta.get("labels", {})
    parts = [f"{len([v for v in labels.values() if v is not None])} label(s) set",
             f"{len([v for v in labels.values() if v is None])} removed"]
    if "spec" in patch:
        parts.append(f"taints now {len(patch['spec']['taints'] or [])}")
    return ", ".join(parts)
