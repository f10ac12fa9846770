"""tests/k8s/control-plane itself: a failed `up` names the component and shows its log; `down` stops
exactly what `up` recorded, and is idempotent. The real `up` is exercised by every k8s test (the
session's control plane); here stand-in binaries make the failures happen on demand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "control-plane"
VERSION = "v1.35.4"

HEALTHY_ETCD = f"""#!{sys.executable}
# Answers /health like etcd on the port of --listen-client-urls, until killed.
import http.server, sys
port = int(next(a for a in sys.argv if a.startswith("--listen-client-urls=")).rsplit(":", 1)[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{{"health":"true"}}'
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
print("stand-in etcd serving", flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""
BROKEN_APISERVER = "#!/bin/sh\necho 'E0101 stand-in apiserver: bind: address already in use' >&2\nexit 3\n"


def stand_ins(cache: Path, **scripts: str) -> dict[str, str]:
    binaries = cache / VERSION / "bin"
    binaries.mkdir(parents=True)
    for name in ("etcd", "kube-apiserver", "kube-scheduler", "kubectl"):
        path = binaries / name
        path.write_text(scripts.get(name.replace("-", "_"), "#!/bin/sh\nexit 0\n"))
        path.chmod(0o755)
    return {**os.environ, "NODEAGENT_K8S_CACHE": str(cache)}


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_failed_up_names_the_component_shows_its_log_and_stops_what_it_started(tmp_path: Path) -> None:
    env = stand_ins(tmp_path / "cache", etcd=HEALTHY_ETCD, kube_apiserver=BROKEN_APISERVER)
    run_dir = tmp_path / "cp"
    result = run("up", str(run_dir), env=env)
    assert result.returncode == 1
    assert "kube-apiserver exited (3)" in result.stderr
    assert "stand-in apiserver: bind: address already in use" in result.stderr  # its last log lines
    state = json.loads((run_dir / "state.json").read_text())
    etcd = next(p for p in state["processes"] if p["name"] == "etcd")
    deadline = time.monotonic() + 10
    while alive(etcd["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(etcd["pid"])  # the failed `up` stopped the etcd it had started


def test_down_stops_exactly_the_recorded_processes_and_is_idempotent(tmp_path: Path) -> None:
    env = stand_ins(tmp_path / "cache")
    run_dir = tmp_path / "cp"
    run_dir.mkdir()
    ours = subprocess.Popen(["sleep", "300"], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)  # also `sleep`, never recorded
    try:
        start = Path(f"/proc/{ours.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        (run_dir / "state.json").write_text(json.dumps({"processes": [
            {"name": "etcd", "pid": ours.pid, "start": start},
            {"name": "kube-apiserver", "pid": bystander.pid, "start": "1"},  # a reused PID: not ours any more
        ]}))
        first = run("down", str(run_dir), env=env)
        assert first.returncode == 0 and "stopped etcd" in first.stdout, first.stdout + first.stderr
        assert ours.wait(10) is not None
        assert bystander.poll() is None
        again = run("down", str(run_dir), env=env)
        assert again.returncode == 0 and "nothing" in again.stdout
        never = run("down", str(tmp_path / "never-up"), env=env)
        assert never.returncode == 0 and "nothing" in never.stdout
    finally:
        for process in (ours, bystander):
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.mark.k8s
def test_the_session_control_plane_is_ready_and_its_scheduler_leads(control_plane) -> None:
    """What `up` promised when it exited 0: /readyz ok, the scheduler holds its lease, the CRDs serve."""
    admin = control_plane.admin
    assert admin.text("/readyz") == "ok"
    lease = admin.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler")
    assert lease["spec"]["holderIdentity"]
    crd = admin.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                    "noderesourcetopologies.topology.node.k8s.io")
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    version = admin.get("/version")
    assert version["gitVersion"] == VERSION
    assert {p.name for p in control_plane.dir.glob("*.log")} >= {"etcd.log", "kube-apiserver.log",
                                                                  "kube-scheduler.log"}
