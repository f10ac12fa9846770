"""The smallest patch that makes a Node carry the desired labels and taints (pure; no client).

Ownership is what keeps nodeagent from trampling other writers:

* labels: the annotation ``<prefix>/owned-labels`` lists, comma-separated, every label nodeagent
  set. A label listed there but no longer computed is removed; a label not listed is never touched
  (unless nodeagent computes that very key, which it then takes over);
* taints: the annotation ``<prefix>/owned-taints`` lists ``key:Effect`` of the taints nodeagent set.
  ``spec.taints`` is a plain list in the API (no merge key), so a patch must carry the whole list:
  it is rebuilt from the current one, keeping every foreign taint in place, and sent with the
  Node's ``resourceVersion`` so that a concurrent change by someone else is a 409 and a retry,
  never a lost taint.

The patch is a JSON merge patch (RFC 7386): a key set to ``null`` is removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.labels import LabelConfig, NodeTaint, format_owned, parse_owned


@dataclass(frozen=True)
class NodeView:
    """The parts of a Node object the publisher reads."""

    name: str
    uid: str | None
    resource_version: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    taints: list[dict[str, Any]]

    @classmethod
    def from_api(cls, node: Mapping[str, Any]) -> NodeView:
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        return cls(
            name=str(meta.get("name", "")),
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            taints=[dict(t) for t in spec.get("taints") or []],
        )


def _identity(taint: Mapping[str, Any]) -> str:
    return f"{taint.get('key', '')}:{taint.get('effect', '')}"


def desired_taint_list(current: list[dict[str, Any]], previously_owned: set[str],
                       desired: list[NodeTaint]) -> list[dict[str, Any]]:
    """``current`` with nodeagent's taints brought up to date and every foreign taint kept in place."""
    wanted = {t.identity: t for t in desired}
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for taint in current:
        identity = _identity(taint)
        if identity in wanted:
            if identity in seen:
                continue
            seen.add(identity)
            target = wanted[identity]
            if (taint.get("value") or "") == target.value:
                result.append(taint)  # unchanged: keep it as is (timeAdded and all)
            else:
                result.append(target.to_api())
        elif identity not in previously_owned:
            result.append(taint)
    result.extend(t.to_api() for identity, t in sorted(wanted.items()) if identity not in seen)
    return result


def node_patch(node: NodeView, labels: Mapping[str, str], taints: list[NodeTaint],
               config: LabelConfig, *, handed_over: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The merge patch that brings ``node`` to the desired state, or None when it already is there.

    ``handed_over``: keys nodeagent stops owning without removing them (another writer, NFD, now
    publishes them): they leave the ownership annotation but stay on the Node.
    """
    owned_labels = parse_owned(node.annotations.get(config.owned_labels_annotation)) - handed_over
    owned_taints = parse_owned(node.annotations.get(config.owned_taints_annotation))

    label_patch: dict[str, str | None] = {k: v for k, v in labels.items() if node.labels.get(k) != v}
    for key in sorted(owned_labels - labels.keys()):
        if key in node.labels:
            label_patch[key] = None

    annotation_patch: dict[str, str | None] = {}
    owned_labels_value = format_owned(labels)
    if node.annotations.get(config.owned_labels_annotation) != owned_labels_value:
        annotation_patch[config.owned_labels_annotation] = owned_labels_value
    owned_taints_value = format_owned(t.identity for t in taints) or None
    if node.annotations.get(config.owned_taints_annotation) != owned_taints_value:
        annotation_patch[config.owned_taints_annotation] = owned_taints_value

    new_taints = desired_taint_list(node.taints, owned_taints, taints)
    taints_changed = new_taints != node.taints

    if not (label_patch or annotation_patch or taints_changed):
        return None
    metadata: dict[str, Any] = {}
    if label_patch:
        metadata["labels"] = label_patch
    if annotation_patch:
        metadata["annotations"] = annotation_patch
    patch: dict[str, Any] = {"metadata": metadata}
    if taints_changed:
        # A list replaces the whole list: make it conditional on the list we read.
        metadata["resourceVersion"] = node.resource_version
        patch["spec"] = {"taints": new_taints or None}
    return patch


def unmatched_selector(node: NodeView, match_labels: Mapping[str, str], config: LabelConfig) -> dict[str, str]:
    """The ``matchLabels`` a Node does not satisfy (empty: the profile selects it).

    Labels nodeagent itself set do not count: a profile must not select a node through the labels
    it makes that node carry.
    """
    owned = parse_owned(node.annotations.get(config.owned_labels_annotation))
    return {k: v for k, v in match_labels.items() if k in owned or node.labels.get(k) != v}


def changed_labels(node: NodeView, labels: Mapping[str, str], keys: list[str]) -> dict[str, tuple[str | None, str]]:
    """For each of ``keys`` whose value on the node differs from ``labels``: (old, new)."""
    return {key: (node.labels.get(key), labels[key]) for key in keys
            if key in labels and node.labels.get(key) != labels[key]}
