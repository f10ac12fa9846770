"""nodediff: the smallest Node patch, ownership via annotations, taints merged (pure)."""

from __future__ import annotations

from typing import Any

from nodeagent.k8s.nodediff import NodeView, desired_taint_list, node_patch, unmatched_selector
from nodeagent.labels import LabelConfig, NodeTaint

CONFIG = LabelConfig()
OWNED = "nodeagent.io/owned-labels"
OWNED_TAINTS = "nodeagent.io/owned-taints"


def view(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
         taints: list[dict[str, Any]] | None = None, rv: str = "7") -> NodeView:
    return NodeView("n", "uid-1", rv, dict(labels or {}), dict(annotations or {}), list(taints or []))


def test_converged_node_needs_no_patch() -> None:
    node = view({"a": "1", "b": "2", "theirs": "x"}, {OWNED: "a,b"})
    assert node_patch(node, {"a": "1", "b": "2"}, [], CONFIG) is None


def test_only_the_difference_is_patched_and_foreign_labels_are_untouched() -> None:
    node = view({"a": "1", "b": "2", "gone": "g", "theirs": "x"}, {OWNED: "a,b,gone"})
    patch = node_patch(node, {"a": "1", "b": "3", "c": "4"}, [], CONFIG)
    assert patch == {"metadata": {"labels": {"b": "3", "c": "4", "gone": None},
                                  "annotations": {OWNED: "a,b,c"}}}


def test_a_label_dropped_by_hand_from_an_owned_key_is_not_removed_again() -> None:
    node = view({"a": "1"}, {OWNED: "a,old"})
    assert node_patch(node, {"a": "1"}, [], CONFIG) == {"metadata": {"annotations": {OWNED: "a"}}}


def test_a_computed_key_set_by_someone_else_is_taken_over() -> None:
    node = view({"a": "wrong"}, {})
    assert node_patch(node, {"a": "1"}, [], CONFIG) == {
        "metadata": {"labels": {"a": "1"}, "annotations": {OWNED: "a"}}}


def test_taints_merge_keeps_foreign_ones_in_place_and_sends_resource_version() -> None:
    foreign = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "t"}
    old_ours = {"key": "old", "value": "x", "effect": "NoSchedule"}
    node = view({}, {OWNED: "", OWNED_TAINTS: "old:NoSchedule"}, [old_ours, foreign], rv="42")
    patch = node_patch(node, {}, [NodeTaint("hp", "true", "NoSchedule")], CONFIG)
    assert patch is not None
    assert patch["metadata"]["resourceVersion"] == "42"
    assert patch["spec"]["taints"] == [foreign, {"key": "hp", "value": "true", "effect": "NoSchedule"}]
    assert patch["metadata"]["annotations"] == {OWNED_TAINTS: "hp:NoSchedule"}


def test_unchanged_taint_is_kept_verbatim_and_not_patched() -> None:
    ours = {"key": "hp", "value": "true", "effect": "NoSchedule", "timeAdded": "2024-01-01T00:00:00Z"}
    node = view({}, {OWNED: "", OWNED_TAINTS: "hp:NoSchedule"}, [ours])
    assert node_patch(node, {}, [NodeTaint("hp", "true", "NoSchedule")], CONFIG) is None


def test_removing_the_last_owned_taint_clears_the_list_and_the_annotation() -> None:
    ours = {"key": "hp", "value": "true", "effect": "NoSchedule"}
    node = view({}, {OWNED: "", OWNED_TAINTS: "hp:NoSchedule"}, [ours])
    patch = node_patch(node, {}, [], CONFIG)
    assert patch == {"metadata": {"annotations": {OWNED_TAINTS: None}, "resourceVersion": "7"},
                     "spec": {"taints": None}}


def test_foreign_taint_with_our_key_but_other_effect_is_kept() -> None:
    theirs = {"key": "hp", "value": "true", "effect": "NoExecute"}
    result = desired_taint_list([theirs], set(), [NodeTaint("hp", "true", "NoSchedule")])
    assert result == [theirs, {"key": "hp", "value": "true", "effect": "NoSchedule"}]


def test_value_change_replaces_in_place() -> None:
    current = [{"key": "a", "effect": "NoSchedule"}, {"key": "hp", "value": "old", "effect": "NoSchedule"},
               {"key": "z", "effect": "NoSchedule"}]
    result = desired_taint_list(current, {"hp:NoSchedule"}, [NodeTaint("hp", "new", "NoSchedule")])
    assert [t["key"] for t in result] == ["a", "hp", "z"]
    assert result[1] == {"key": "hp", "value": "new", "effect": "NoSchedule"}


def test_profile_selector_ignores_labels_nodeagent_set() -> None:
    node = view({"pool": "gpu", "nodeagent.io/kvm": "true", "mine": "x"}, {OWNED: "nodeagent.io/kvm,mine"})
    assert unmatched_selector(node, {"pool": "gpu"}, CONFIG) == {}
    assert unmatched_selector(node, {"pool": "cpu"}, CONFIG) == {"pool": "cpu"}
    assert unmatched_selector(node, {"mine": "x"}, CONFIG) == {"mine": "x"}  # not through our own labels


def test_from_api_tolerates_missing_fields() -> None:
    node = NodeView.from_api({"metadata": {"name": "n"}})
    assert node.labels == {} and node.annotations == {} and node.taints == [] and node.resource_version is None
