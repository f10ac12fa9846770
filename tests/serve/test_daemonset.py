"""The kustomize base in daemonset/: it builds, every object validates offline against the real
Kubernetes schemas, and it agrees with the code (flags, routes, taints, RBAC verbs, profiles).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from tests.support.serve import REPO

DAEMONSET = REPO / "daemonset"
KUBECTL = shutil.which("kubectl")
SCHEMA_VERSIONS = ("1.30", "1.33")  # the oldest with ValidatingAdmissionPolicy v1 and node-bound tokens; a newer one
BUILT_IN_GROUPS = ("v1", "apps/", "rbac.authorization.k8s.io/", "admissionregistration.k8s.io/",
                   "apiextensions.k8s.io/")
SEED_TAINTS = {"realtime", "hpc-node", "high-performance", "nvidia.com/gpu"}  # the reference VM recipes' nodes

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def build(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run([str(KUBECTL), "kustomize", str(path)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return build(DAEMONSET)


@pytest.fixture(scope="module")
def read_only() -> list[dict[str, Any]]:
    """The read-only variant: `kubectl apply -k daemonset/overlays/read-only`."""
    return build(DAEMONSET / "overlays" / "read-only")


def test_an_overlay_of_ones_own_gets_the_same_read_only_variant(tmp_path: Path, read_only) -> None:
    """The README's recipe: the base plus the component, from outside the repository's tree."""
    rel = os.path.relpath(DAEMONSET, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{rel}/base"], "components": [f"{rel}/components/read-only"]}))
    assert build(tmp_path) == read_only


def with_components(tmp_path: Path, *components: str) -> list[dict[str, Any]]:
    """An overlay of one's own: the base plus the named components, from outside the tree."""
    rel = os.path.relpath(DAEMONSET, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{rel}/base"], "components": [f"{rel}/components/{c}" for c in components]}))
    return build(tmp_path)


@pytest.fixture(scope="module")
def rbac_proxy(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """/metrics behind kube-rbac-proxy (components/rbac-proxy)."""
    return with_components(tmp_path_factory.mktemp("rbac-proxy"), "rbac-proxy")


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "DaemonSet")["spec"]["template"]["spec"]


def container(docs: list[dict[str, Any]], name: str = "nodeagent") -> dict[str, Any]:
    found = [c for c in pod_spec(docs)["containers"] if c["name"] == name]
    assert len(found) == 1
    return found[0]


def host_mounts(docs: list[dict[str, Any]]) -> dict[str, tuple[str, bool]]:
    """host path → (mount path, read-only)."""
    spec = pod_spec(docs)
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    return {volumes[m["name"]]: (m["mountPath"], bool(m.get("readOnly"))) for m in container(docs)["volumeMounts"]
            if m["name"] in volumes}


# --- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["base", "read_only", "rbac_proxy"])
@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_built_in_object_validates_against_the_kubernetes_schema(variant, version, request) -> None:
    import kubernetes_validate

    docs = request.getfixturevalue(variant)
    built_in = [d for d in docs if d["apiVersion"].startswith(BUILT_IN_GROUPS)]
    assert len(built_in) >= 10
    for doc in built_in:
        kubernetes_validate.validate(doc, version, strict=True)  # raises, naming the field


def test_custom_resources_are_consistent_with_what_they_point_at(base) -> None:
    """No offline schema exists for prometheus-operator's kinds: check what can go wrong in practice."""
    kinds = sorted(d["kind"] for d in base if not d["apiVersion"].startswith(BUILT_IN_GROUPS))
    assert kinds == ["PrometheusRule", "ServiceMonitor"]
    service = one(base, "Service")
    monitor = one(base, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    pod_labels = one(base, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container(base)["ports"]}
    crd = one(base, "CustomResourceDefinition")
    assert crd["spec"]["group"] == "topology.node.k8s.io"


# --- agreement with the code ---------------------------------------------------------------


def test_the_cluster_role_grants_exactly_what_the_publisher_uses(base) -> None:
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in one(base, "ClusterRole")["rules"]}
    assert rules == {
        (("",), ("nodes",)): {"get", "list", "watch", "patch"},
        (("",), ("events",)): {"create"},
        (("topology.node.k8s.io",), ("noderesourcetopologies",)):
            {"get", "list", "watch", "create", "update", "patch", "delete"},
        (("nfd.k8s-sigs.io",), ("nodefeatures",)): {"list"},  # --nfd-labels=auto's NodeFeature lookup
    }
    binding = one(base, "ClusterRoleBinding")
    sa = one(base, "ServiceAccount")
    assert binding["roleRef"]["name"] == one(base, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    assert pod_spec(base)["serviceAccountName"] == sa["metadata"]["name"]
    policy = one(base, "ValidatingAdmissionPolicy")
    # Matched by the ServiceAccount's name in any namespace (tests/k8s/test_admission.py enforces it for real).
    assert f"endsWith(':{sa['metadata']['name']}')" in policy["spec"]["matchConditions"][0]["expression"]
    assert one(base, "ValidatingAdmissionPolicyBinding")["spec"]["policyName"] == policy["metadata"]["name"]


def test_the_profiles_config_map_is_generated_from_every_example_profile(base) -> None:
    files = {p.name: p.read_text() for p in sorted((DAEMONSET / "profiles").glob("*.yaml"))}
    config_map = one(base, "ConfigMap", next(d["metadata"]["name"] for d in base if d["kind"] == "ConfigMap"
                                            and d["metadata"]["name"].startswith("nodeagent-profiles-")))
    assert config_map["data"] == files  # every file, byte for byte: a new profile must be listed too
    volume = next(v for v in pod_spec(base)["volumes"] if v["name"] == "profiles")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]  # the hashed name, rewritten


def parse_cli(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse a ``nodeagent [global options] serve [options]`` command line with the real CLI:
    (global params, serve params). An unknown flag or a bad value raises."""
    from nodeagent.cli import main

    index = argv.index("serve")
    ctx = main.make_context("nodeagent", [*argv[:index], "serve"])
    command = main.get_command(ctx, "serve")
    assert command is not None
    return ctx.params, command.make_context("serve", argv[index + 1:], parent=ctx).params


DOWNWARD_API_SAMPLES = {"status.podIP": "192.0.2.10", "spec.nodeName": "node-a"}


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args, from the container's environment."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def container_env(spec: dict[str, Any]) -> dict[str, str]:
    """A container's environment as the kubelet builds it: in order, $(VAR) expanded from the
    variables defined before (downward-API values: samples)."""
    env: dict[str, str] = {}
    for e in spec.get("env", []):
        env[e["name"]] = expand(e["value"], env) if "value" in e \
            else DOWNWARD_API_SAMPLES[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def _serve_args(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container's command line (the image's entrypoint is ``nodeagent``), parsed by the real CLI,
    with its environment (NODEAGENT_LISTEN …) as the kubelet expands it."""
    assert "command" not in container(docs)
    env = container_env(container(docs))
    from nodeagent.cli import main

    serve_params = main.get_command(click.Context(main), "serve").params  # type: ignore[union-attr]
    listen_var = next(p.envvar for p in serve_params if p.name == "listen")
    args = [expand(a, env) for a in container(docs)["args"]]
    if listen_var in env and not any(a.startswith("--listen") for a in args):
        args.append(f"--listen={env[listen_var]}")  # what click takes from the environment
    top, params = parse_cli(args)
    return {"env": env, **top}, params


def test_the_daemon_set_runs_serve_with_flags_the_cli_accepts(base) -> None:
    top, params = _serve_args(base)
    assert top["env"]["NODEAGENT_ROOT"] == "/host"
    assert top["env"]["NODEAGENT_LIVE"] == "true"  # /host is this machine: live sources, chroot-ed commands
    from nodeagent.cli import main

    envvars = {p.name: p.envvar for p in main.params}
    assert envvars["root"] == "NODEAGENT_ROOT" and envvars["live"] == "NODEAGENT_LIVE"
    assert params["profiles_dir"] == next(m["mountPath"] for m in container(base)["volumeMounts"]
                                          if m["name"] == "profiles")
    assert not params["read_only"]
    assert params["listen"] == "192.0.2.10:9464"  # the pod IP (the node's address), not every interface
    port = int(params["listen"].rpartition(":")[2])
    assert [p["containerPort"] for p in container(base)["ports"]] == [port]
    assert container(base)["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container(base)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    node_name = next(e for e in container(base)["env"] if e["name"] == "NODE_NAME")
    assert node_name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_the_host_is_mounted_under_host_writable_only_where_prep_writes(base) -> None:
    mounts = host_mounts(base)
    for path in ("/sys", "/proc", "/dev", "/etc", "/var/lib/nodeagent", "/lib/modules"):
        assert mounts[path][0] == "/host" + path
    assert mounts["/"] == ("/host", True)  # host commands run chroot-ed into /host: its binaries, read-only
    writable = {path for path, (_, ro) in mounts.items() if not ro}
    assert writable == {"/sys", "/proc", "/etc", "/var/lib/nodeagent", "/boot"}
    spec = pod_spec(base)
    assert container(base)["securityContext"]["privileged"] is True
    assert spec["hostPID"] is True  # --live: /host is this machine, processes included
    assert spec["hostNetwork"] is True  # kernel uevents are multicast in the host network namespace
    assert spec["terminationGracePeriodSeconds"] >= 60  # an apply in progress finishes


def test_the_read_only_variant_is_unprivileged_and_mounts_nothing_writable(read_only) -> None:
    _top, params = _serve_args(read_only)
    assert params["read_only"] is True
    security = container(read_only)["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"] and security["readOnlyRootFilesystem"] is True
    spec = pod_spec(read_only)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["hostPID"] is False
    mounts = host_mounts(read_only)
    assert all(ro for _path, (_mount, ro) in mounts.items()), mounts
    assert "/" not in mounts  # no host root: no commands, and no view of other pods' secrets
    assert {"/sys", "/proc", "/dev", "/etc", "/var/lib/nodeagent", "/lib/modules"} <= mounts.keys()


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    """The scheduler's rule: an empty key with operator Exists matches every taint."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
            return True
        if t.get("operator", "Equal") == "Equal" and t.get("key") == taint["key"] \
                and t.get("value", "") == taint.get("value", ""):
            return True
    return False


@pytest.mark.parametrize("variant", ["base", "read_only"])
def test_every_taint_is_tolerated_a_custom_profiles_included(variant, request) -> None:
    """Profiles taint nodes with keys of their own: the agent must stay on (and return to) them."""
    tolerations = pod_spec(request.getfixturevalue(variant))["tolerations"]
    taints = [{"key": key, "effect": "NoSchedule"} for key in SEED_TAINTS]
    for path in (DAEMONSET / "profiles").glob("*.yaml"):
        taints += yaml.safe_load(path.read_text())["spec"].get("taints", [])
    taints += [{"key": "example.com/my-own-profile", "value": "x", "effect": "NoExecute"},
               {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert all(tolerates(tolerations, t) for t in taints), tolerations
    assert not tolerates([{"key": "realtime", "operator": "Exists"}], taints[-2])  # the rule above can fail


def test_resources_are_set_from_the_measured_rss(base) -> None:
    resources = container(base)["resources"]

    def mib(quantity: str) -> float:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return int(number) * (1024 if unit == "Gi" else 1)

    results = (REPO / "bench" / "serve" / "RESULTS.md").read_text()
    measured = max(float(m) for m in re.findall(r"\|\s*nodeagent serve[^|]*\|\s*([\d.]+)\s*MiB", results))
    request, limit = mib(resources["requests"]["memory"]), mib(resources["limits"]["memory"])
    assert measured <= request <= limit and limit >= 2 * measured
    assert "cpu" in resources["requests"]


def test_the_systemd_unit_starts_serve_with_flags_the_cli_accepts() -> None:
    unit = (REPO / "systemd" / "nodeagent.service").read_text()
    exec_start = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.replace("$NODEAGENT_SERVE_ARGS", ""))
    assert Path(argv[0]).name == "nodeagent"
    _top, params = parse_cli(argv[1:])
    assert params["publish"] is None  # never publishes unless told: no pod, no --kubeconfig


# --- the admission policy, evaluated with a real CEL implementation ---------------------------


# The ValidatingAdmissionPolicy is checked by the real API server: tests/k8s/test_admission.py.


def test_the_cli_parsing_helper_rejects_unknown_flags() -> None:
    """Guards parse_cli above: a flag the CLI does not know is an error, not silently ignored."""
    with pytest.raises(click.NoSuchOption):
        parse_cli(["serve", "--no-such-flag"])
    with pytest.raises(click.BadParameter):
        parse_cli(["serve", "--listen", "nowhere"])


# --- /metrics behind kube-rbac-proxy -----------------------------------------------------------


def test_the_rbac_proxy_fronts_an_agent_that_listens_on_loopback_only(rbac_proxy, base) -> None:
    assert len(pod_spec(rbac_proxy)["containers"]) == 2 and len(pod_spec(base)["containers"]) == 1
    _top, params = _serve_args(rbac_proxy)
    assert params["listen"] == "127.0.0.1:9464"  # nothing but the node itself reaches the agent
    assert "ports" not in container(rbac_proxy)
    for probe in ("livenessProbe", "readinessProbe"):  # the kubelet probes from the host namespace
        get = container(rbac_proxy)[probe]["httpGet"]
        assert (get["host"], get["port"]) == ("127.0.0.1", 9464)
    proxy = container(rbac_proxy, "kube-rbac-proxy")
    env = container_env(proxy)
    flags = dict(expand(a, env).removeprefix("--").split("=", 1) for a in proxy["args"])
    assert flags["upstream"] == f"http://{params['listen']}/"
    assert flags["secure-listen-address"] == f"{DOWNWARD_API_SAMPLES['status.podIP']}:9443"
    assert flags["allow-paths"] == "/metrics"
    assert proxy["securityContext"]["runAsNonRoot"] is True and not proxy["securityContext"]["allowPrivilegeEscalation"]
    service = one(rbac_proxy, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [p["name"] for p in proxy["ports"]]
    endpoint = one(rbac_proxy, "ServiceMonitor")["spec"]["endpoints"]
    assert [(e["port"], e["scheme"]) for e in endpoint] == [(service["spec"]["ports"][0]["name"], "https")]
    assert endpoint[0]["bearerTokenFile"].endswith("/serviceaccount/token")


def test_the_rbac_proxy_may_review_tokens_and_access_and_nothing_else(rbac_proxy, base) -> None:
    roles = {d["metadata"]["name"]: d for d in rbac_proxy if d["kind"] == "ClusterRole"}
    assert roles.keys() == {"nodeagent", "nodeagent-rbac-proxy", "nodeagent-metrics-reader"}
    assert roles["nodeagent"] == one(base, "ClusterRole")  # the agent's own role is unchanged
    assert {(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in roles["nodeagent-rbac-proxy"]["rules"]} \
        == {("authentication.k8s.io", "tokenreviews", ("create",)),
            ("authorization.k8s.io", "subjectaccessreviews", ("create",))}
    assert roles["nodeagent-metrics-reader"]["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    binding = one(rbac_proxy, "ClusterRoleBinding", "nodeagent-rbac-proxy")
    sa = one(rbac_proxy, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]


def test_the_rbac_proxy_and_read_only_components_combine_in_either_order(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one_way = with_components(tmp_path / "a", "rbac-proxy", "read-only")
    other = with_components(tmp_path / "b", "read-only", "rbac-proxy")
    assert one_way == other
    _top, params = _serve_args(one_way)
    assert params["read_only"] is True and params["listen"] == "127.0.0.1:9464"
