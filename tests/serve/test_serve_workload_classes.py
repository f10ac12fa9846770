"""``serve --workload-classes``: the daemon's readiness metrics follow a WorkloadClasses ConfigMap and the
selected profile's spec.workloadClasses, as ``python -m nodeagent serve`` subprocesses on a fixture root
(no cluster: --node-label selects the profile; --read-only, nothing is prepared)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.exposition import scrape_value
from tests.support.serve import REPO, configmap_dir
from tests.support.waiting import wait_for

FIXTURE = "intel-2s-8gpu"  # 4 passthrough-ready H100s, KSM off, 64 + 64 1Gi pages
HEADER = "apiVersion: nodeagent.io/v1alpha1\nkind: WorkloadClasses\nclasses:\n"
PROFILE = """apiVersion: nodeagent.io/v1alpha1
kind: NodeProfile
metadata: {name: gpu}
spec:
  nodeSelector: {matchLabels: {nodeagent.io/pool: gpu}}
  workloadClasses:
    inference:
      requires: {kvm: true, gpus: {passthrough: 1}}
"""


def gpus(count: int) -> str:
    return HEADER + f"  gpu-pool:\n    requires: {{kvm: true, gpus: {{passthrough: {count}}}}}\n"


def ready(serve, workload: str) -> float | None:
    return scrape_value(serve.get("/metrics")[1], "nodeagent_workload_ready", workload=workload)


def test_readiness_follows_the_configmap_and_the_profile(fresh_host_tree, tmp_path: Path, serve_factory) -> None:
    root = fresh_host_tree(FIXTURE)
    classes = configmap_dir(tmp_path / "classes", {"classes.yaml": gpus(4)})
    profiles = configmap_dir(tmp_path / "profiles", {"gpu.yaml": PROFILE})
    serve = serve_factory(root, "--read-only", "--uevents", "none", "--interval", "3600",
                          "--profiles", str(profiles), "--profiles-poll", "0.2",
                          "--node-label", "nodeagent.io/pool=gpu", "--workload-classes", str(classes / "classes.yaml"))
    serve.wait_serving()
    serve.wait_ready()
    assert ready(serve, "gpu-pool") == 1  # the file's class: four GPUs, four ready
    assert ready(serve, "inference") == 1  # the selected profile's class
    assert ready(serve, "general") == 1

    configmap_dir(tmp_path / "classes", {"classes.yaml": gpus(8)}, generation=2)  # the ConfigMap is edited
    wait_for(lambda: ready(serve, "gpu-pool") == 0, 10, "the edited class in force")

    configmap_dir(tmp_path / "classes", {"classes.yaml": gpus(0)}, generation=3)  # an edit that is invalid
    serve.wait_log(lambda r: "gpus.passthrough: 0 is not a number of GPUs" in r.get("msg", ""), 10,
                   "the invalid classes logged")
    assert ready(serve, "gpu-pool") == 0  # the classes last read stay in force
    assert serve.proc.poll() is None
    assert serve.stop() == 0


def test_an_invalid_file_stops_serve_at_start(host_trees, tmp_path: Path) -> None:
    bad = tmp_path / "classes.yaml"
    bad.write_text(HEADER + "  gpu-pool:\n    requires: {gpus: {passthrough: many}}\n")
    result = subprocess.run([sys.executable, "-m", "nodeagent", "--root", str(host_trees("minimal")), "serve",
                             "--listen", "127.0.0.1:0", "--read-only", "--no-publish", "--uevents", "none",
                             "--workload-classes", str(bad)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "classes.gpu-pool.requires.gpus.passthrough: 'many' is not a number of GPUs" in result.stderr
