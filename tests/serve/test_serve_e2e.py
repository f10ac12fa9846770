"""End to end: ``python -m nodeagent serve`` as a subprocess, against a private fixture root and
the local API server.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.exposition import scrape_value
from tests.support.serve import NODE, REPO, configmap_dir, drop_uevent
from tests.support.waiting import wait_for

pytestmark = pytest.mark.k8s

FIXTURE = "intel-2s-8gpu"
GPU = "0000:9a:00.0"
HUGE_1G = "sys/devices/system/node/node{}/hugepages/hugepages-1048576kB/nr_hugepages"
JOURNAL = "var/lib/nodeagent/journal.json"


def _gpu_driver(text: str, address: str) -> str | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nodeagent_gpu_info" and sample.labels.get("pci_address") == address:
                return sample.labels.get("driver")
    return None


def _events(apiserver, reason: str) -> list[dict]:
    return [e for e in apiserver.events if e.get("reason") == reason]


def _journal(root: Path) -> dict:
    return json.loads((root / JOURNAL).read_text())


def test_serve_applies_publishes_serves_and_reacts_to_uevents(*, fresh_host_tree, apiserver, kubeconfig, profiles_dir,
                                                               serve_factory, tmp_path):
    root = fresh_host_tree(FIXTURE)
    apiserver.add_node(NODE, labels={"kubernetes.io/hostname": NODE, "nodeagent.io/pool": "database"})
    spool = tmp_path / "uevents"
    serve = serve_factory(root, "--profiles", str(profiles_dir), "--kubeconfig", kubeconfig, "--node-name", NODE,
                          "--interval", "3600", "--uevents", f"spool:{spool}", "--event-debounce", "0.2")
    serve.wait_serving()
    assert serve.get("/healthz") == (200, "ok\n")
    serve.wait_ready()

    # Prep: the database profile (selected by the Node's pool label) went through apply.
    assert [(root / HUGE_1G.format(n)).read_text().strip() for n in (0, 1)] == ["32", "32"]
    journal = _journal(root)
    assert journal["profile"] == "database"
    assert {e["status"] for e in journal["entries"]} == {"applied"}
    assert (root / "etc/nodeagent/profile.yaml").read_text() == (profiles_dir / "database.yaml").read_text()
    wait_for(lambda: _events(apiserver, "PrepApplied"), 10, "a PrepApplied Event")
    assert "profile database applied" in _events(apiserver, "PrepApplied")[0]["message"]

    # Publication: computed labels, the profile's label and taint, the ownership annotation, the NRT.
    node = apiserver.node(NODE)
    labels = node["metadata"]["labels"]
    assert labels["nodeagent.io/kvm"] in ("true", "false")
    assert labels["nodeagent.io/dedicated"] == "database"
    assert labels["nodeagent.io/pool"] == "database"  # the operator's label is left alone
    assert "nodeagent.io/dedicated" in node["metadata"]["annotations"]["nodeagent.io/owned-labels"].split(",")
    assert {"key": "dedicated", "value": "database", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert NODE in apiserver.topologies

    # Metrics: node series, the daemon's own, in one scrape.
    status, text = serve.get("/metrics")
    assert status == 200
    assert scrape_value(text, "nodeagent_numa_node_cpus", numa_node="0") == 112
    assert scrape_value(text, "nodeagent_profile_selected", profile="database", file="database.yaml") == 1
    assert scrape_value(text, "nodeagent_ready") == 1
    assert scrape_value(text, "nodeagent_reconciles_total", trigger="start") == 1
    assert _gpu_driver(text, GPU) == "nvidia"

    # A GPU moves to vfio-pci in the fixture tree. Without a uevent nothing looks (period: 1 h)…
    link = root / "sys/bus/pci/devices" / GPU
    driver = Path(os.path.realpath(link)) / "driver"
    target = os.readlink(driver)
    driver.unlink()
    driver.symlink_to(target.replace("/nvidia", "/vfio-pci"))
    time.sleep(0.6)  # three debounce periods
    assert _gpu_driver(serve.get("/metrics")[1], GPU) == "nvidia"
    # … the kernel's unbind/bind uevents (and one irrelevant event) trigger one debounced re-inventory.
    devpath = "/" + os.path.relpath(os.path.realpath(link), root / "sys")
    drop_uevent(spool, f"unbind pci {devpath}", f"bind pci {devpath}", "change net /devices/virtual/net/lo")
    # The new inventory is served as soon as it is taken; the step's counters when it ends.
    wait_for(lambda: scrape_value(serve.get("/metrics")[1], "nodeagent_reconciles_total", trigger="uevent"), 10,
             "a reconcile step started by the uevent")
    text = serve.get("/metrics")[1]
    assert _gpu_driver(text, GPU) == "vfio-pci"
    assert scrape_value(text, "nodeagent_reconciles_total", trigger="uevent") == 1
    assert scrape_value(text, "nodeagent_uevents_total") == 2

    assert serve.stop() == 0
    assert any(r.get("msg") == "stopped" for r in serve.logs())
    # Every log line is one JSON object with the standard fields.
    assert serve.records and all({"time", "level", "logger", "msg"} <= r.keys() for r in serve.records)
    assert len(serve.records) == len([line for line in serve.lines if line.strip()])


def test_sigterm_in_the_middle_of_an_apply_leaves_the_journal_consistent(fresh_host_tree, host_trees, profiles_dir,
                                                                          serve_factory, tmp_path):
    root = fresh_host_tree(FIXTURE)
    pristine = host_trees(FIXTURE)
    gate = tmp_path / "gate"
    gate.mkdir()
    serve = serve_factory(
        root, "--profiles", str(profiles_dir), "--node-label", "nodeagent.io/pool=database", "--uevents", "none",
        module="tests.serve.slow_writes",
        env={"NODEAGENT_TEST_BLOCK_WRITE": "/node1/hugepages/hugepages-1048576kB/nr_hugepages",
             "NODEAGENT_TEST_GATE": str(gate)})
    wait_for(lambda: (gate / "reached").exists() or serve.proc.poll() is not None, 20, "the held write")
    assert serve.proc.poll() is None, serve.log_text()
    # Mid-apply: node0 done, node1 announced in the journal and not yet written.
    during = {e["target"]: e["status"] for e in _journal(root)["entries"]}
    assert during == {"node0 1Gi": "applied", "node1 1Gi": "applying"}

    serve.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert serve.proc.poll() is None, "serve exited in the middle of a change"
    (gate / "release").touch()
    assert serve.proc.wait(20) == 0, serve.log_text()

    journal = _journal(root)
    assert {e["status"] for e in journal["entries"]} == {"applied"}
    for entry in journal["entries"]:
        if entry["subsystem"] == "hugepages":
            assert (root / entry["path"].lstrip("/")).read_text().strip() == str(entry["new"])
            assert str(entry["old"]) == (pristine / entry["path"].lstrip("/")).read_text().strip()
    with open(root / "var/lib/nodeagent/apply.lock") as handle:  # the lock was released
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    logs = serve.logs()
    assert sum(1 for r in logs if str(r.get("msg", "")).startswith("applying profile")) == 1
    assert any(str(r.get("msg", "")).startswith("SIGTERM") for r in logs)

    # The journal is good enough for revert to put the fixture back exactly as it was.
    done = subprocess.run([sys.executable, "-m", "nodeagent", "--root", str(root), "revert", "--yes"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for node in (0, 1):
        path = HUGE_1G.format(node)
        assert (root / path).read_text().strip() == (pristine / path).read_text().strip()
    assert not (root / "etc/nodeagent/profile.yaml").exists()
    assert not (root / JOURNAL).exists()


def test_read_only_never_writes_to_the_host(fresh_host_tree, apiserver, kubeconfig, profiles_dir, serve_factory):
    root = fresh_host_tree(FIXTURE)
    before = _tree_state(root)
    apiserver.add_node(NODE, labels={"kubernetes.io/hostname": NODE, "nodeagent.io/pool": "database"})
    serve = serve_factory(root, "--read-only", "--profiles", str(profiles_dir), "--kubeconfig", kubeconfig,
                          "--node-name", NODE, "--interval", "1", "--uevents", "none")
    serve.wait_serving()
    serve.wait_ready()
    wait_for(lambda: scrape_value(serve.get("/metrics")[1], "nodeagent_reconciles_total", trigger="periodic"),
             10, "a periodic reconcile")
    text = serve.get("/metrics")[1]
    assert scrape_value(text, "nodeagent_prep_state", state="read-only") == 1
    node = apiserver.node(NODE)
    assert node["metadata"]["labels"]["nodeagent.io/dedicated"] == "database"  # labels: yes
    assert {"key": "dedicated", "value": "database", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert serve.stop() == 0
    assert _tree_state(root) == before  # prep: no, not one byte, not even the lock file
    assert not [e for e in apiserver.events if e.get("reason", "").startswith("Prep")]


def _tree_state(root: Path) -> dict[str, tuple[int, bytes | str]]:
    state: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                state[path] = (st.st_mode, os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    state[path] = (st.st_mode, handle.read())
            else:
                state[path] = (st.st_mode, b"")
    return state


def test_without_a_cluster_it_preps_and_serves_but_never_publishes(fresh_host_tree, apiserver, kubeconfig,
                                                                    profiles_dir, serve_factory):
    """The systemd unit's mode: no pod, no --kubeconfig. A kubeconfig in $KUBECONFIG is not enough."""
    root = fresh_host_tree(FIXTURE)
    apiserver.add_node(NODE)
    serve = serve_factory(root, "--profiles", str(profiles_dir), "--node-label", "nodeagent.io/pool=database",
                          "--uevents", "none", env={"KUBECONFIG": kubeconfig, "NODE_NAME": NODE})
    serve.wait_serving()
    serve.wait_ready()
    assert (root / HUGE_1G.format(0)).read_text().strip() == "32"
    assert scrape_value(serve.get("/metrics")[1], "nodeagent_prep_state", state="applied") == 1
    assert serve.stop() == 0
    assert apiserver.count() == 0


def test_a_node_label_added_later_selects_a_profile(fresh_host_tree, apiserver, kubeconfig, profiles_dir,
                                                     serve_factory):
    root = fresh_host_tree(FIXTURE)
    apiserver.add_node(NODE)
    serve = serve_factory(root, "--profiles", str(profiles_dir), "--kubeconfig", kubeconfig, "--node-name", NODE,
                          "--interval", "3600", "--uevents", "none")
    serve.wait_serving()
    serve.wait_ready()
    assert scrape_value(serve.get("/metrics")[1], "nodeagent_prep_state", state="none") == 1
    assert not (root / JOURNAL).exists()

    apiserver.mutate_node(NODE, lambda n: n["metadata"]["labels"].update({"nodeagent.io/pool": "database"}))
    wait_for((root / JOURNAL).exists, 10, "the database profile applied")
    wait_for(lambda: apiserver.node(NODE)["metadata"]["labels"].get("nodeagent.io/dedicated") == "database", 10,
             "the profile's label published")
    text = serve.get("/metrics")[1]
    assert scrape_value(text, "nodeagent_reconciles_total", trigger="node-labels") == 1
    assert serve.stop() == 0


def test_sighup_reloads_the_profiles(fresh_host_tree, apiserver, kubeconfig, profiles_dir, serve_factory):
    root = fresh_host_tree(FIXTURE)
    apiserver.add_node(NODE, labels={"nodeagent.io/pool": "database"})
    serve = serve_factory(root, "--profiles", str(profiles_dir), "--profiles-poll", "0", "--kubeconfig", kubeconfig,
                          "--node-name", NODE, "--interval", "3600", "--uevents", "none")
    serve.wait_serving()
    serve.wait_ready()
    files = {p.name: p.read_text() for p in sorted(profiles_dir.glob("*.yaml"))}
    files["database.yaml"] = files["database.yaml"].replace("nodeagent.io/dedicated: database",
                                                            "nodeagent.io/dedicated: database-v2")
    assert "database-v2" in files["database.yaml"]
    configmap_dir(profiles_dir, files, generation=2)  # kubelet's atomic ..data swap
    time.sleep(1.5)  # directory polling is off: nothing happens until SIGHUP
    assert apiserver.node(NODE)["metadata"]["labels"]["nodeagent.io/dedicated"] == "database"

    serve.signal(signal.SIGHUP)
    wait_for(lambda: apiserver.node(NODE)["metadata"]["labels"]["nodeagent.io/dedicated"] == "database-v2", 10,
             "the reloaded profile's label")
    assert any(str(r.get("msg", "")).startswith("profiles reloaded (SIGHUP)") for r in serve.logs())
    assert serve.proc.poll() is None  # SIGHUP does not stop it
    assert serve.stop() == 0


def test_a_changed_configmap_is_picked_up_without_a_signal(fresh_host_tree, profiles_dir, serve_factory):
    root = fresh_host_tree(FIXTURE)
    serve = serve_factory(root, "--profiles", str(profiles_dir), "--profiles-poll", "0.2", "--uevents", "none",
                          "--node-label", "nodeagent.io/pool=database", "--interval", "3600")
    serve.wait_serving()
    serve.wait_ready()
    files = {p.name: p.read_text() for p in sorted(profiles_dir.glob("*.yaml"))}
    files["database.yaml"] = files["database.yaml"].replace("count: 64}", "count: 48}")
    configmap_dir(profiles_dir, files, generation=2)
    wait_for(lambda: scrape_value(serve.get("/metrics")[1], "nodeagent_reconciles_total",
                                  trigger="profiles-changed"), 10, "a reconcile for the changed directory")
    assert (root / HUGE_1G.format(0)).read_text().strip() == "24"  # the edited profile, applied
    assert serve.stop() == 0


def test_a_failed_apply_is_rolled_back_reported_and_not_hammered(*, fresh_host_tree, apiserver, kubeconfig,
                                                                 profiles_dir, serve_factory, tmp_path):
    """ai-training binds GPUs to vfio-pci; a fixture tree's kernel never moves the driver link."""
    root = fresh_host_tree(FIXTURE)
    apiserver.add_node(NODE, labels={"nodeagent.io/pool": "gpu"})
    spool = tmp_path / "uevents"
    serve = serve_factory(root, "--profiles", str(profiles_dir), "--kubeconfig", kubeconfig, "--node-name", NODE,
                          "--interval", "3600", "--uevents", f"spool:{spool}", "--event-debounce", "0")
    serve.wait_serving()
    serve.wait_ready()  # a failed prep does not make the node unready: labels are still published
    wait_for(lambda: _events(apiserver, "PrepFailed"), 10, "a PrepFailed Event")
    message = _events(apiserver, "PrepFailed")[0]["message"]
    assert "profile ai-training failed" in message and "rolled back" in message
    assert (root / "sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages").read_text().strip() == "0"
    assert apiserver.node(NODE)["metadata"]["labels"]["nvidia.com/gpu.workload.config"] == "vm-passthrough"

    drop_uevent(spool, "add pci /devices/pci0000:00/0000:00:01.0")  # another look: no second attempt yet
    wait_for(lambda: scrape_value(serve.get("/metrics")[1], "nodeagent_reconciles_total", trigger="uevent"), 10,
             "the uevent reconcile")
    assert scrape_value(serve.get("/metrics")[1], "nodeagent_prep_state", state="backoff") == 1
    assert sum(1 for r in serve.logs() if str(r.get("msg", "")).startswith("applying profile")) == 1
    assert len(_events(apiserver, "PrepFailed")) == 1
    assert serve.stop() == 0


def test_several_matching_profiles_first_by_file_name_wins(fresh_host_tree, apiserver, kubeconfig, profiles_dir,
                                                           serve_factory):
    root = fresh_host_tree(FIXTURE)
    files = {p.name: p.read_text() for p in sorted(profiles_dir.glob("*.yaml"))}
    files["zz-database-copy.yaml"] = files["database.yaml"].replace("name: database", "name: database-copy")
    configmap_dir(profiles_dir, files, generation=2)
    apiserver.add_node(NODE, labels={"nodeagent.io/pool": "database"})
    serve = serve_factory(root, "--profiles", str(profiles_dir), "--kubeconfig", kubeconfig, "--node-name", NODE,
                          "--interval", "3600", "--uevents", "none")
    serve.wait_serving()
    serve.wait_ready()
    text = serve.get("/metrics")[1]
    assert scrape_value(text, "nodeagent_profile_selected", profile="database", file="database.yaml") == 1
    assert scrape_value(text, "nodeagent_profile_conflict") == 1
    assert _journal(root)["profile"] == "database"
    wait_for(lambda: _events(apiserver, "ProfileConflict"), 10, "a ProfileConflict Event")
    assert "database-copy (zz-database-copy.yaml)" in _events(apiserver, "ProfileConflict")[0]["message"]
    assert serve.stop() == 0


def test_impossible_configurations_exit_2_and_a_taken_port_1(fresh_host_tree, serve_factory, tmp_path):
    root = fresh_host_tree("minimal")
    bad_mode = serve_factory(root, "--uevents", "inotify")
    assert bad_mode.proc.wait(20) == 2
    assert "--uevents" in bad_mode.log_text()
    no_node = serve_factory(root, "--publish", "--kubeconfig", str(tmp_path / "absent"))
    assert no_node.proc.wait(20) == 2
    assert "no node name" in no_node.log_text()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        clash = serve_factory(root, "--uevents", "none", "--listen", f"127.0.0.1:{port}")  # the last --listen wins
        assert clash.proc.wait(20) == 1
    clash.stop()
    assert "Address already in use" in clash.log_text() and f"127.0.0.1:{port}" in clash.log_text()
