"""Everything shipped in daemonset/, checked by the real kube-apiserver (tests/k8s/control-plane).

* ``kubectl apply --server-side --dry-run=server -k`` for the base, each overlay and the monitoring
  part: the server's own schemas, defaulting and admission (the prometheus-operator CRD comes from
  tests/k8s/fixtures);
* the ValidatingAdmissionPolicy, enforced by the server: the agent's own writes are admitted,
  anything else is denied, as the agent's ServiceAccount (impersonated by cluster-admin with the
  ``authentication.kubernetes.io/node-name`` extra a node-bound token carries), in the shipped
  namespace and in one an overlay renames.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.cluster import NRT_PATH, Admin, ApiServer, ControlPlane, KubeError

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
DAEMONSET = REPO / "daemonset"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
#: Every kustomization shipped (components only build inside one, as overlays/read-only uses it).
KUSTOMIZATIONS = sorted(p.parent for name in ("kustomization.yaml", "Kustomization") for p in DAEMONSET.rglob(name)
                        if "kind: Component" not in p.read_text())


def agent(plane: ControlPlane, node: str | None = "node-a", namespace: str = "nodeagent") -> Admin:
    """The agent's ServiceAccount on ``node`` (None: a token not bound to a node)."""
    return plane.admin.impersonating(
        f"system:serviceaccount:{namespace}:nodeagent",
        ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
        {NODE_NAME_EXTRA: [node]} if node else None)


def denied(write: Callable[[], Any]) -> str:
    """The admission policy's refusal (403 with its message); fails if the write went through."""
    with pytest.raises(KubeError) as caught:
        write()
    assert caught.value.status in (403, 422), caught.value  # 422 when several of its rules fail at once
    assert "nodeagent-own-node-only" in caught.value.body, caught.value.body
    return caught.value.body


def patch_node(client: Admin, name: str, patch: dict[str, Any]) -> Any:
    return client.patch(f"/api/v1/nodes/{name}", patch)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_kustomization_passes_server_side_dry_run(control_plane: ControlPlane, kustomization: Path) -> None:
    result = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "-k", str(kustomization),
                                   check=False)
    assert result.returncode == 0, result.stderr
    assert "serverside-applied (server dry run)" in result.stdout


def test_the_monitoring_part_is_validated_by_the_operators_schema(control_plane: ControlPlane,
                                                                 tmp_path: Path) -> None:
    """The PrometheusRule really is checked: a rule without `expr` is refused by the server."""
    broken = tmp_path / "broken-rule.yaml"
    broken.write_text("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n"
                      "metadata: {name: broken, namespace: nodeagent}\n"
                      "spec: {groups: [{name: g, rules: [{alert: NoExpr}]}]}\n")
    result = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(broken), check=False)
    assert result.returncode != 0 and "expr" in result.stderr


def test_the_policy_admits_the_agents_own_writes(apiserver: ApiServer, host_trees: Any) -> None:
    """What nodeagent really sends for a fresh GPU node with the database profile, and its NRT and Event."""
    from nodeagent.daemon.profiles import load_file
    from nodeagent.discover import discover
    from nodeagent.host import Host
    from nodeagent.k8s.desired import desired_state
    from nodeagent.k8s.nodediff import NodeView, node_patch

    plane = apiserver.plane
    old = apiserver.add_node("node-a", labels={"kubernetes.io/hostname": "node-a", "nodeagent.io/pool": "database"},
                             taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    inventory = discover(Host(str(host_trees("intel-2s-8gpu"))))
    profile = load_file("database.yaml", str(DAEMONSET / "profiles" / "database.yaml")).profile
    desired = desired_state(inventory, profile, node_name="node-a")
    patch = node_patch(NodeView.from_api(old), desired.labels, list(desired.taints), desired.label_config)
    assert patch is not None and len(patch["metadata"]["labels"]) > 10
    me = agent(plane)
    new = patch_node(me, "node-a", patch)
    assert new["metadata"]["labels"]["nodeagent.io/dedicated"] == "database"
    patch_node(me, "node-a", {"metadata": {"labels": {"nodeagent.io/dedicated": None}}})  # dropping an owned label
    nrt = {"apiVersion": "topology.node.k8s.io/v1alpha2", "kind": "NodeResourceTopology",
           "metadata": {"name": "node-a"}, "topologyPolicies": ["None"], "zones": []}
    me.create(NRT_PATH, nrt)
    me.request("DELETE", f"{NRT_PATH}/node-a")
    me.create("/api/v1/namespaces/default/events", event("node-a"))


def event(node: str, kind: str = "Node") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "node-a."},
            "involvedObject": {"kind": kind, "name": node, "apiVersion": "v1"}, "reason": "PrepApplied",
            "message": "test", "type": "Normal", "source": {"component": "nodeagent", "host": "node-a"}}


def test_the_policy_denies_everything_outside_the_agents_own_node_and_prefixes(apiserver: ApiServer) -> None:
    plane = apiserver.plane
    for name in ("node-a", "node-b"):
        apiserver.add_node(name, labels={"kubernetes.io/hostname": name, "pool": "gpu"},
                           taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    me = agent(plane)
    own = {"metadata": {"labels": {"nodeagent.io/kvm": "true"}}}
    patch_node(me, "node-a", own)
    assert "may only change its own Node" in denied(lambda: patch_node(me, "node-b", own))  # another node
    assert "not bound to a node" in denied(lambda: patch_node(agent(plane, node=None), "node-a", own))
    assert "label" in denied(lambda: patch_node(me, "node-a", {"metadata": {"labels": {"pool": "db"}}}))
    assert "annotation" in denied(lambda: patch_node(
        me, "node-a", {"metadata": {"annotations": {"node.alpha.kubernetes.io/ttl": "0"}}}))
    assert "cordon" in denied(lambda: patch_node(me, "node-a", {"spec": {"unschedulable": True}}))
    profile_taint = {"key": "dedicated", "value": "database", "effect": "NoSchedule"}
    assert "lifecycle" in denied(lambda: patch_node(me, "node-a", {"spec": {"taints": [profile_taint]}}))
    lifecycle = apiserver.node("node-a")["spec"]["taints"]
    patch_node(me, "node-a", {"spec": {"taints": [*lifecycle, profile_taint]}})
    # Others (an admin, kubelet) are not subject to it at all.
    patch_node(plane.admin, "node-b", {"metadata": {"labels": {"pool": "db"}}})
    assert apiserver.node("node-b")["metadata"]["labels"]["pool"] == "db"
    assert apiserver.node("node-b")["metadata"]["labels"].get("nodeagent.io/kvm") is None


def test_the_policy_limits_topologies_and_events_to_the_agents_node(apiserver: ApiServer) -> None:
    plane = apiserver.plane
    me = agent(plane)
    nrt = {"apiVersion": "topology.node.k8s.io/v1alpha2", "kind": "NodeResourceTopology",
           "metadata": {"name": "node-b"}, "topologyPolicies": ["None"], "zones": []}
    denied(lambda: me.create(NRT_PATH, nrt))
    plane.admin.create(NRT_PATH, nrt)
    denied(lambda: me.request("DELETE", f"{NRT_PATH}/node-b"))
    own = copy.deepcopy(nrt)
    own["metadata"]["name"] = "node-a"
    me.create(NRT_PATH, own)
    me.create("/api/v1/namespaces/default/events", event("node-a"))
    denied(lambda: me.create("/api/v1/namespaces/default/events", event("node-b")))
    denied(lambda: me.create("/api/v1/namespaces/default/events", event("node-a", kind="Pod")))


def test_an_overlay_in_another_namespace_is_still_enforced(apiserver: ApiServer, tmp_path: Path) -> None:
    """An overlay that moves the agent to its own namespace: the policy still holds its writes."""
    plane = apiserver.plane
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: virt-agents\n"
        f"resources:\n  - {os.path.relpath(DAEMONSET / 'overlays' / 'read-only', overlay)}\n"
        # kustomize's `namespace` rewrites only subjects named `default`: the overlay moves the binding too
        "patches:\n  - target: {kind: ClusterRoleBinding, name: nodeagent}\n    patch: |-\n"
        "      - {op: replace, path: /subjects/0/namespace, value: virt-agents}\n")
    plane.kubectl("create", "namespace", "virt-agents", check=False)
    try:
        plane.kubectl("apply", "--server-side", "-k", str(overlay))
        plane.wait_policy_enforced(namespace="virt-agents")
        subjects = plane.admin.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/nodeagent")["subjects"]
        assert subjects == [{"kind": "ServiceAccount", "name": "nodeagent", "namespace": "virt-agents"}]
        for name in ("node-a", "node-b"):
            apiserver.add_node(name)
        moved = agent(plane, namespace="virt-agents")
        patch_node(moved, "node-a", {"metadata": {"labels": {"nodeagent.io/kvm": "true"}}})
        denied(lambda: patch_node(moved, "node-b", {"metadata": {"labels": {"nodeagent.io/kvm": "true"}}}))
        denied(lambda: patch_node(moved, "node-a", {"metadata": {"labels": {"pool": "db"}}}))
    finally:  # the session's agent is back in the shipped namespace for the tests after this one
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(DAEMONSET))


def test_the_agents_bound_token_carries_its_node(apiserver: ApiServer, kubeconfig: str) -> None:
    """The credentials the other tests give the agent are what the policy needs: the server itself puts
    the node's name in the user info of the agent's token (a token bound to its pod on node-a)."""
    apiserver.add_node("node-a")
    token = apiserver.plane.token("nodeagent", "nodeagent", node="node-a")
    review = apiserver.plane.admin.create("/apis/authentication.k8s.io/v1/tokenreviews",
                                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                           "spec": {"token": token}})
    user = review["status"]["user"]
    assert user["username"] == "system:serviceaccount:nodeagent:nodeagent"
    assert user["extra"][NODE_NAME_EXTRA] == ["node-a"]
