"""The Helm chart's objects against the real control plane (tests/k8s/control-plane: etcd,
kube-apiserver, with daemonset/ and the monitoring CRDs applied): a server-side dry-run apply of
each variant is admitted — schemas, CRD validation and the admission policy's CEL as the API
server compiles it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.install.test_helm_chart import CHART, KUBE_VERSION, helm  # noqa: F401 - the session fixture

pytestmark = pytest.mark.k8s


@pytest.mark.parametrize("values", [[], ["readOnly=true"], ["rbacProxy.enabled=true"],
                                    ["labels.prefix=example.com", "monitoring.serviceMonitor.release=kps"]],
                         ids=["default", "read-only", "rbac-proxy", "values"])
def test_the_api_server_admits_every_rendered_object(control_plane, helm: Path, tmp_path: Path,  # noqa: F811
                                                     values: list[str]) -> None:
    rendered = subprocess.run([str(helm), "template", "nodeagent", str(CHART), "-n", "nodeagent", "--include-crds",
                               "--kube-version", KUBE_VERSION, *(a for v in values for a in ("--set", v))],
                              capture_output=True, text=True, timeout=120, check=True).stdout
    manifest = tmp_path / "nodeagent.yaml"
    manifest.write_text(rendered)
    done = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "--force-conflicts",
                                 "--field-manager=helm-dry-run", "-f", str(manifest), check=False)
    assert done.returncode == 0, done.stderr
    kinds = {line.split("/")[0] for line in done.stdout.splitlines() if "(server dry run)" in line}
    assert {"daemonset.apps", "validatingadmissionpolicy.admissionregistration.k8s.io",
            "servicemonitor.monitoring.coreos.com", "prometheusrule.monitoring.coreos.com"} <= kinds, done.stdout
