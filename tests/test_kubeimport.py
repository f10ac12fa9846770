"""nodeagent's lean import of the kubernetes client (nodeagent/k8s/kubeimport.py), in a fresh
interpreter: the publisher's calls work against the real API server (tests/k8s/control-plane)
through the real client, while the client's ~700 model modules, its dynamic client and its
websocket stream client stay unimported; a name only the package ``__init__`` defines still works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
from nodeagent.k8s.client import connect
api = connect({kubeconfig!r})
node = api.get_node("n1")
api.patch_node("n1", {{"metadata": {{"labels": {{"nodeagent.io/kvm": "true"}}}}}})
lean = {{"name": node["metadata"]["name"], "modules": sorted(m for m in sys.modules if m.startswith("kubernetes"))}}
import kubernetes.client
lean["whole_client_name"] = kubernetes.client.CoreV1Api.__name__  # defined only by the package __init__
print(json.dumps(lean))
"""


@pytest.mark.k8s
def test_publisher_calls_without_the_whole_client(apiserver: Any, tmp_path: Path) -> None:
    apiserver.add_node("n1")
    kubeconfig = apiserver.agent_kubeconfig(tmp_path / "kubeconfig", "n1")
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(repo=str(REPO), kubeconfig=kubeconfig)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert apiserver.node("n1")["metadata"]["labels"]["nodeagent.io/kvm"] == "true"
    assert result["name"] == "n1"
    modules = set(result["modules"])
    assert {"kubernetes.client.api_client", "kubernetes.client.rest", "kubernetes.config.kube_config"} <= modules
    assert not [m for m in modules if m.startswith(("kubernetes.client.models.", "kubernetes.dynamic",
                                                    "kubernetes.stream", "kubernetes.client.api."))]
    assert result["whole_client_name"] == "CoreV1Api"
