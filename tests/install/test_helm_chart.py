"""The Helm chart in daemonset/chart/nodeagent, with a real helm (tests/install/helm.py builds it):
it lints, its rendered objects equal the kustomize base's where the two overlap (base, read-only,
rbac-proxy), every built-in object validates against the Kubernetes schemas, and each value does
what values.yaml says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.install.helm import HelmBuildError, ensure_helm
from tests.serve.test_daemonset import DAEMONSET, build, with_components

CHART = DAEMONSET / "chart" / "nodeagent"
KUBE_VERSION = "1.30.0"
HELM_ONLY_LABELS = ("app.kubernetes.io/managed-by", "helm.sh/chart")
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return ensure_helm()
    except HelmBuildError as exc:
        pytest.skip(str(exc))


def render(helm: Path, *values: str, namespace: str = "nodeagent", files: dict[str, Any] | None = None,
           tmp_path: Path | None = None) -> list[dict[str, Any]]:
    argv = [str(helm), "template", "nodeagent", str(CHART), "-n", namespace, "--include-crds",
            "--kube-version", KUBE_VERSION]
    for value in values:
        argv += ["--set", value]
    if files is not None:
        assert tmp_path is not None
        (tmp_path / "values.yaml").write_text(yaml.safe_dump(files))
        argv += ["-f", str(tmp_path / "values.yaml")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def fails(helm: Path, *values: str) -> str:
    done = subprocess.run([str(helm), "template", "nodeagent", str(CHART), "-n", "nodeagent",
                           "--kube-version", KUBE_VERSION, *(a for v in values for a in ("--set", v))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    return done.stderr


def _sorted_named(value: Any) -> Any:
    """Lists of named things (containers, env, mounts, volumes, ports, rule groups) in name order:
    kustomize's strategic merge may reorder them, the API server does not care."""
    if isinstance(value, dict):
        return {k: _sorted_named(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted_named(v) for v in value]
        if items and all(isinstance(i, dict) and "name" in i for i in items):
            items.sort(key=lambda i: str(i["name"]))
        return items
    return value


def _squeezed(value: Any) -> Any:
    """Runs of whitespace as one space (insignificant in CEL)."""
    if isinstance(value, dict):
        return {k: _squeezed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_squeezed(v) for v in value]
    return re.sub(r"\s+", " ", value) if isinstance(value, str) else value


def normalized(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → object, without what only one tool adds: Helm's bookkeeping labels and
    checksum annotation, kustomize's hash suffix on the profiles ConfigMap and its namespace on
    cluster-scoped objects."""
    out = {}
    for original in docs:
        doc = json.loads(json.dumps(original))
        meta = doc["metadata"]
        for key in HELM_ONLY_LABELS:
            meta.get("labels", {}).pop(key, None)
        if doc["kind"] in CLUSTER_SCOPED:
            meta.pop("namespace", None)
        meta["name"] = re.sub(r"^(nodeagent-profiles)-[a-z0-9]{10}$", r"\1", meta["name"])
        if doc["kind"] == "DaemonSet":
            template = doc["spec"]["template"]
            template["metadata"]["annotations"].pop("checksum/profiles", None)
            for volume in template["spec"]["volumes"]:
                if "configMap" in volume:
                    volume["configMap"]["name"] = re.sub(r"-[a-z0-9]{10}$", "", volume["configMap"]["name"])
            for container in template["spec"]["containers"]:
                container.pop("imagePullPolicy", None)  # the chart states the default
        if doc["kind"] == "ValidatingAdmissionPolicy":  # kustomize re-folds `>-` CEL with a blank line
            doc["spec"] = _squeezed(doc["spec"])
        out[(doc["kind"], meta["name"])] = _sorted_named(doc)
    return out


def assert_same(chart: list[dict[str, Any]], kustomize: list[dict[str, Any]]) -> None:
    ours, theirs = normalized(chart), normalized(kustomize)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == theirs[key], (key, _diff(ours[key], theirs[key]))


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys()) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: chart {a!r} != kustomize {b!r}"]


def test_the_chart_lints(helm: Path) -> None:
    for values in ([], ["readOnly=true"], ["rbacProxy.enabled=true", "monitoring.serviceMonitor.release=kps"]):
        done = subprocess.run([str(helm), "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
                               *(a for v in values for a in ("--set", v))],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 chart(s) failed" in done.stdout


def test_the_default_release_is_the_kustomize_base(helm: Path) -> None:
    assert_same(render(helm, "namespace.create=true", "image.tag=0.1.0"), build(DAEMONSET))


def test_read_only_is_the_read_only_overlay(helm: Path) -> None:
    assert_same(render(helm, "namespace.create=true", "readOnly=true"), build(DAEMONSET / "overlays" / "read-only"))


def test_the_rbac_proxy_is_the_rbac_proxy_component(helm: Path, tmp_path: Path) -> None:
    assert_same(render(helm, "namespace.create=true", "rbacProxy.enabled=true"),
                with_components(tmp_path, "rbac-proxy"))
    (tmp_path / "both").mkdir()
    assert_same(render(helm, "namespace.create=true", "rbacProxy.enabled=true", "readOnly=true"),
                with_components(tmp_path / "both", "read-only", "rbac-proxy"))


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_every_built_in_object_validates_against_the_kubernetes_schema(helm: Path, version: str) -> None:
    import kubernetes_validate

    docs = render(helm, "namespace.create=true", "rbacProxy.enabled=true", "labels.prefix=example.com",
                  "labels.nfdCompatible=false")
    built_in = [d for d in docs if d["kind"] not in ("PrometheusRule", "ServiceMonitor")]
    assert len(built_in) >= 12
    for doc in built_in:
        kubernetes_validate.validate(doc, version, strict=True)


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _agent(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "nodeagent")


def test_label_values_reach_the_agent_and_the_admission_policy(helm: Path) -> None:
    docs = render(helm, "labels.prefix=example.com", "labels.nfdCompatible=false", "topology.enabled=false",
                  namespace="agents")
    args = _agent(docs)["args"]
    assert {"--prefix=example.com", "--no-nfd-labels", "--no-topology"} <= set(args)
    policy = yaml.safe_dump(_one(docs, "ValidatingAdmissionPolicy"))
    assert "'example.com/'" in policy and "'nodeagent.io/'" not in policy
    # The policy matches the agent's ServiceAccount in whatever namespace the release lands in.
    assert "endsWith(':nodeagent')" in policy and "system:serviceaccount:nodeagent:" not in policy
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in CLUSTER_SCOPED} == {"agents"}
    assert "--nfd-labels" in _agent(render(helm, "labels.nfdCompatible=true"))["args"]
    assert not any(a.startswith(("--prefix", "--nfd", "--no-nfd")) for a in _agent(render(helm))["args"])


def test_tolerations_default_to_every_taint_and_can_be_narrowed(helm: Path) -> None:
    spec = _one(render(helm), "DaemonSet")["spec"]["template"]["spec"]
    assert spec["tolerations"] == [{"operator": "Exists"}]
    narrowed = render(helm, "tolerations[0].key=dedicated", "tolerations[0].operator=Exists")
    assert _one(narrowed, "DaemonSet")["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "dedicated", "operator": "Exists"}]


def test_the_release_label_selects_for_kube_prometheus_stack(helm: Path) -> None:
    docs = render(helm, "monitoring.serviceMonitor.release=kube-prometheus-stack")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert _one(docs, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert "release" not in _one(render(helm), "ServiceMonitor")["metadata"]["labels"]
    off = render(helm, "monitoring.serviceMonitor.enabled=false", "monitoring.prometheusRule.enabled=false",
                 "monitoring.dashboard.enabled=false", "admissionPolicy.enabled=false")
    assert not {"ServiceMonitor", "PrometheusRule", "ValidatingAdmissionPolicy"} & {d["kind"] for d in off}
    assert [d["metadata"]["name"] for d in off if d["kind"] == "ConfigMap"] == ["nodeagent-profiles"]


def test_profiles_are_the_examples_plus_ones_own(helm: Path, tmp_path: Path) -> None:
    examples = {p.name: p.read_text() for p in (DAEMONSET / "profiles").glob("*.yaml")}
    default = render(helm)
    assert _one(default, "ConfigMap", "nodeagent-profiles")["data"] == examples
    own = (DAEMONSET / "profiles" / "database.yaml").read_text().replace("name: database", "name: mine")
    docs = render(helm, files={"profiles": {"examples": False, "files": {"mine.yaml": own}}}, tmp_path=tmp_path)
    assert _one(docs, "ConfigMap", "nodeagent-profiles")["data"] == {"mine.yaml": own}
    checksum = "checksum/profiles"
    annotations = [_one(d, "DaemonSet")["spec"]["template"]["metadata"]["annotations"] for d in (default, docs)]
    assert annotations[0][checksum] != annotations[1][checksum]  # a changed profile rolls the DaemonSet
    assert "profiles.files" in fails(helm, "profiles.files.bad/name=x")


def test_workload_classes_reach_the_agent_as_a_mounted_file(helm: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nodeagent.cli import main
    from nodeagent.workloads import parse_workload_classes_text

    document = ("apiVersion: nodeagent.io/v1alpha1\nkind: WorkloadClasses\nclasses:\n"
                "  ai-training:\n    requires: {gpus: {passthrough: 4}}\n")
    for read_only in (False, True):
        docs = render(helm, files={"workloadClasses": document, "readOnly": read_only}, tmp_path=tmp_path)
        data = _one(docs, "ConfigMap", "nodeagent-workload-classes")["data"]
        assert data == {"classes.yaml": document}
        assert parse_workload_classes_text(data["classes.yaml"])["ai-training"].requirement("gpus").raw == {
            "passthrough": 4}
        agent = _agent(docs)
        arg = "--workload-classes=/etc/nodeagent/workload-classes/classes.yaml"
        assert arg in agent["args"]
        assert {"name": "workload-classes", "mountPath": "/etc/nodeagent/workload-classes",
                "readOnly": True} in agent["volumeMounts"]
        volumes = _one(docs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
        assert {"name": "workload-classes", "configMap": {"name": "nodeagent-workload-classes"}} in volumes
    # the flag the chart passes is one serve accepts
    assert "--workload-classes FILE" in CliRunner().invoke(main, ["serve", "--help"]).output
    default = render(helm)
    assert not any(d["metadata"]["name"] == "nodeagent-workload-classes" for d in default)
    assert not any(a.startswith("--workload-classes") for a in _agent(default)["args"])


def test_the_chart_renders_what_daemonset_monitoring_holds(helm: Path) -> None:
    rule = yaml.safe_load((DAEMONSET / "monitoring" / "prometheusrule.yaml").read_text())
    assert _one(render(helm), "PrometheusRule")["spec"] == rule["spec"]
    dashboard = (DAEMONSET / "monitoring" / "grafana" / "nodeagent-dashboard.json").read_text()
    assert _one(render(helm), "ConfigMap", "nodeagent-grafana-dashboard")["data"] == {
        "nodeagent-dashboard.json": dashboard}


def test_the_chart_links_resolve_inside_the_repository() -> None:
    """files/ and crds/ are links into daemonset/: one copy of each manifest."""
    links = [p for p in CHART.rglob("*") if p.is_symlink()]
    assert {p.name for p in links} == {"profiles", "monitoring", "admission-policy.yaml", "noderesourcetopologies.yaml"}
    for link in links:
        assert not os.readlink(link).startswith("/") and link.resolve().is_relative_to(DAEMONSET)


def test_alert_thresholds_set_by_the_user_reach_the_rendered_rule(helm: Path, tmp_path: Path) -> None:
    """Thresholds are values: generate.py --values mine.yaml --stdout, handed to the chart with --set-file."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"thresholds": {"alerts": {"NodeagentHostCPUHigh": {
        "threshold": 0.65, "for": "10m", "severity": "critical"}}}}))
    generator = Path(__file__).resolve().parents[2] / "daemonset/monitoring/generate.py"
    made = subprocess.run([sys.executable, str(generator), "--values", str(mine), "--stdout"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    (tmp_path / "rules.yaml").write_text(made)
    argv = [str(helm), "template", "nodeagent", str(CHART), "-n", "nodeagent", "--kube-version", KUBE_VERSION,
            "--set-file", f"monitoring.prometheusRule.custom={tmp_path / 'rules.yaml'}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rule = next(d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "PrometheusRule")
    cpu = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == "NodeagentHostCPUHigh")
    assert "0.65" in cpu["expr"] and cpu["for"] == "10m" and cpu["labels"]["severity"] == "critical"
    shipped = next(d for d in render(helm) if d["kind"] == "PrometheusRule")
    default = next(r for g in shipped["spec"]["groups"] for r in g["rules"] if r.get("alert") == "NodeagentHostCPUHigh")
    assert "0.8" in default["expr"] and default["labels"]["severity"] == "warning"
