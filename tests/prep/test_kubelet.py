"""spec.kubelet: plan, apply and revert of the kubelet's CPU, topology and memory managers.

Each host is a small synthetic tree (tests/support/trees) with a kubelet laid out as the flavour
lays it out: kubeadm without a drop-in directory (the config file is edited), kubeadm started with
``--config-dir`` (a drop-in), k3s with its kubelet.conf.d (a drop-in) and an older k3s without it
(``kubelet-arg+``). ``/proc/<pid>/comm`` says whether a kubelet "runs" (discover/process.py reads the
tree's process table). Revert is checked byte for byte, modes included, over the whole tree.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from nodeagent.cli import main
from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.owned import KUBELET_STATE_PENDING_PATH
from nodeagent.prep.apply import revert
from nodeagent.prep.model import Action, Effect, Subsystem
from nodeagent.prep.summary import plan_text
from nodeagent.profile import ProfileError, parse_profile_text
from tests.prep.helpers import applied, journal, planned, profile_doc
from tests.support.trees import TreeSpec, put_file

KUBEADM_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# kubeadm writes this file at join; an operator added the comments
authentication:
  anonymous:
    enabled: false
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
cpuManagerPolicy: none   # the default
evictionHard:
  memory.available: 100Mi
  nodefs.available: 10%
kubeReserved:
  memory: 500Mi
systemReserved: {cpu: 500m, memory: 500Mi}
staticPodPath: /etc/kubernetes/manifests
"""
CPU_STATE = '{"policyName":"none","defaultCpuSet":"","checksum":1353318690}'
MEMORY_STATE = '{"policyName":"None","machineState":{"0":{"numberOfAssignments":0}},"checksum":2760540516}'
ISOLATING = {"cpu": {"reserved": "0,4", "isolated": "1-3,5-7"}}


def snapshot(root: Path) -> dict[str, tuple[bytes | str, int]]:
    """Every file and directory of the tree below /etc and /var: content (or link target) and mode.

    nodeagent's own bookkeeping (/var/lib/nodeagent: the journal, the apply lock) is left out; the
    tests check the journal itself."""
    found: dict[str, tuple[bytes | str, int]] = {}
    for top in ("etc", "var"):
        for directory, dirs, files in os.walk(root / top):
            for name in dirs + files:
                path = Path(directory) / name
                if str(path.relative_to(root)).startswith("var/lib/nodeagent"):
                    continue
                if path.is_symlink():
                    found[str(path)] = (os.readlink(path), 0)
                elif path.is_dir():
                    found[str(path)] = ("dir", path.stat().st_mode)
                else:
                    found[str(path)] = (path.read_bytes(), path.stat().st_mode)
    return found


def kubeadm(root: Path, *, config_dir: bool = False, running: bool = False) -> None:
    put_file(root, "/var/lib/kubelet/config.yaml", KUBEADM_CONFIG)
    os.chmod(root / "var/lib/kubelet/config.yaml", 0o640)
    put_file(root, "/var/lib/kubelet/cpu_manager_state", CPU_STATE)
    put_file(root, "/var/lib/kubelet/memory_manager_state", MEMORY_STATE)
    os.chmod(root / "var/lib/kubelet/cpu_manager_state", 0o600)
    flags = "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock"
    if config_dir:
        flags += " --config-dir=/etc/kubernetes/kubelet.conf.d"
        (root / "etc/kubernetes/kubelet.conf.d").mkdir(parents=True)
    put_file(root, "/var/lib/kubelet/kubeadm-flags.env", f'KUBELET_KUBEADM_ARGS="{flags}"\n')
    if running:
        put_file(root, "/proc/4242/comm", "kubelet\n")


def kubelet_changes(plan: Any) -> list[Any]:
    return [c for c in plan.changes if c.subsystem == Subsystem.KUBELET]


def loaded(root: Path, path: str) -> Any:
    return yaml.safe_load((root / path.lstrip("/")).read_text())


# --- kubeadm without a drop-in directory: the minimal edit ------------------------------------------


def test_isolated_cpus_imply_the_static_cpu_manager_by_a_minimal_edit(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root)
    before = snapshot(root)
    _, plan = planned(host, ISOLATING)
    config, cpu_state = kubelet_changes(plan)[:2]
    assert (config.action, config.path) == (Action.KUBELET_FILE, "/var/lib/kubelet/config.yaml")
    assert config.detail["mechanism"] == "edit" and "no --config-dir" in config.note
    assert config.detail["settings"] == [
        {"key": "cpuManagerPolicy", "current": "none", "desired": "static"},
        {"key": "reservedSystemCPUs", "current": "(unset)", "desired": "0,4"}]
    assert (cpu_state.path, cpu_state.action) == ("/var/lib/kubelet/cpu_manager_state", Action.KUBELET_STATE)
    # Only the CPU manager changed: the memory manager's state file stays.
    assert [c.path for c in kubelet_changes(plan)] == [config.path, cpu_state.path]
    text = plan_text(plan)
    assert "cpuManagerPolicy: none -> static" in text and "reservedSystemCPUs: (unset) -> 0,4" in text

    result = applied(host, ISOLATING)
    assert result.exit_code == 3  # the boot arguments need a reboot; the kubelet is stopped here
    edited = (root / "var/lib/kubelet/config.yaml").read_text()
    # Every other line is kept as it was, comments included; only the value of cpuManagerPolicy changed.
    assert edited == KUBEADM_CONFIG.replace("cpuManagerPolicy: none   # the default\n", "cpuManagerPolicy: static\n") \
        + "reservedSystemCPUs: 0,4\n"
    assert (root / "var/lib/kubelet/config.yaml").stat().st_mode & 0o777 == 0o640
    assert not (root / "var/lib/kubelet/cpu_manager_state").exists()
    assert (root / "var/lib/kubelet/memory_manager_state").read_text() == MEMORY_STATE
    assert discover(host).kubelet.cpu_manager_policy == "static"

    assert revert(host).exit_code == 0
    assert snapshot(root) == before  # byte for byte, modes included; the state file is back as it was


def test_memory_manager_static_derives_reserved_memory_from_the_kubelets_reservations(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root)
    before = snapshot(root)
    spec = {**ISOLATING, "kubelet": {"topologyManagerPolicy": "single-numa-node", "topologyManagerScope": "pod",
                                     "memoryManagerPolicy": "Static",
                                     "cpuManagerPolicyOptions": {"full-pcpus-only": "true"}}}
    _, plan = planned(host, spec)
    rows = {r["key"]: r["desired"] for r in kubelet_changes(plan)[0].detail["settings"]}
    # kubeReserved 500Mi + systemReserved 500Mi + evictionHard memory.available 100Mi, on the first node
    # with a reserved CPU (the kubelet refuses to start unless reservedMemory sums to exactly that).
    assert rows["reservedMemory"] == "node0 memory=1100Mi"
    assert rows["cpuManagerPolicyOptions"] == "full-pcpus-only=true"
    assert sorted(c.path for c in kubelet_changes(plan)[1:]) == ["/var/lib/kubelet/cpu_manager_state",
                                                                 "/var/lib/kubelet/memory_manager_state"]
    assert applied(host, spec).exit_code == 3
    config = loaded(root, "/var/lib/kubelet/config.yaml")
    assert config["reservedMemory"] == [{"numaNode": 0, "limits": {"memory": "1100Mi"}}]
    assert config["memoryManagerPolicy"] == "Static" and config["topologyManagerScope"] == "pod"
    assert config["cpuManagerPolicyOptions"] == {"full-pcpus-only": "true"}
    assert config["clusterDNS"] == ["10.96.0.10"] and config["systemReserved"] == {"cpu": "500m", "memory": "500Mi"}
    assert not (root / "var/lib/kubelet/memory_manager_state").exists()
    # Converged: a second apply changes nothing.
    _, again = planned(host, spec)
    assert kubelet_changes(again) == []
    assert revert(host).exit_code == 0
    assert snapshot(root) == before


# --- a kubelet with --config-dir: the drop-in --------------------------------------------------------


def test_config_dir_gets_a_dropin_with_only_nodeagents_keys(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root, config_dir=True)
    before = snapshot(root)
    spec = {**ISOLATING, "kubelet": {"topologyManagerPolicy": "restricted"}}
    _, plan = planned(host, spec)
    config = kubelet_changes(plan)[0]
    assert config.path == "/etc/kubernetes/kubelet.conf.d/90-nodeagent.conf"
    assert "--config-dir=/etc/kubernetes/kubelet.conf.d" in config.note
    assert "kubeadm-flags.env" in config.note
    assert applied(host, spec).exit_code == 3
    assert (root / "var/lib/kubelet/config.yaml").read_text() == KUBEADM_CONFIG  # untouched
    dropin = loaded(root, config.path)
    assert dropin == {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                      "cpuManagerPolicy": "static", "reservedSystemCPUs": "0,4",
                      "topologyManagerPolicy": "restricted"}
    info = discover(host).kubelet
    assert (info.cpu_manager_policy, info.topology_manager_policy) == ("static", "restricted")
    assert revert(host).exit_code == 0
    assert snapshot(root) == before  # the drop-in is gone, the directory stays (it was there)


def test_running_kubelet_defers_the_state_files_to_before_its_next_start(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root, config_dir=True, running=True)
    before = snapshot(root)
    spec = {"cpu": {"reserved": "0,4"}, "kubelet": {"cpuManagerPolicy": "static"}}
    _, plan = planned(host, spec, boot=False)
    config, pending = kubelet_changes(plan)
    assert config.effect is Effect.KUBELET_RESTART and pending.effect is Effect.KUBELET_RESTART
    assert pending.path == KUBELET_STATE_PENDING_PATH and pending.current == "/var/lib/kubelet/cpu_manager_state"
    assert "[after kubelet restart]" in plan_text(plan)

    result = applied(host, spec, boot=False)
    assert result.exit_code == 3 and result.kubelet_restart_required
    assert any("drain the node" in m for m in result.messages)
    # Never removed under a running kubelet: only recorded.
    assert (root / "var/lib/kubelet/cpu_manager_state").read_text() == CPU_STATE
    record = json.loads((root / KUBELET_STATE_PENDING_PATH.lstrip("/")).read_text())
    assert record["files"] == ["/var/lib/kubelet/cpu_manager_state"]
    assert discover(host).prep.kubelet_restart_required
    # Applying again while it still runs: nothing new, still pending.
    again = applied(host, spec, boot=False)
    assert again.exit_code == 3 and not again.outcomes

    # The boot unit, before kubelet starts: the state file goes, with the record.
    (root / "proc/4242/comm").write_text("bash\n")
    _, boot_plan = planned(host, spec, boot=True)
    assert [c.path for c in kubelet_changes(boot_plan)] == ["/var/lib/kubelet/cpu_manager_state",
                                                              KUBELET_STATE_PENDING_PATH]
    booted = applied(host, spec, boot=True)
    assert not booted.kubelet_restart_required and not booted.failure
    assert not (root / "var/lib/kubelet/cpu_manager_state").exists()
    assert not (root / KUBELET_STATE_PENDING_PATH.lstrip("/")).exists()

    # Revert while kubelet runs again: the configuration comes back, the state file waits for a stopped kubelet.
    (root / "proc/4242/comm").write_text("kubelet\n")
    first = revert(host)
    assert first.exit_code == 1 and any("kubelet is running" in f for f in first.failed)
    assert not (root / "etc/kubernetes/kubelet.conf.d/90-nodeagent.conf").exists()
    (root / "proc/4242/comm").write_text("bash\n")
    assert revert(host).exit_code == 0
    assert snapshot(root) == before


def test_state_file_step_refused_when_kubelet_started_after_the_plan(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root)
    before = snapshot(root)
    ctx, plan = planned(host, ISOLATING)
    put_file(root, "/proc/4242/comm", "kubelet\n")  # started between plan and apply
    from nodeagent.prep.apply import execute

    result = execute(plan, ctx, host, sleep=lambda _: None)
    assert result.exit_code == 1 and "kubelet is running" in (result.failure or "")
    (root / "proc/4242/comm").unlink()
    (root / "proc/4242").rmdir()
    assert snapshot(root) == before  # rolled back: the config edit too


# --- k3s ------------------------------------------------------------------------------------------


def test_k3s_with_kubelet_conf_d_gets_a_dropin(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    (root / "var/lib/nodeagent").mkdir(parents=True)  # as on a host nodeagent is installed on
    put_file(root, "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/00-k3s-defaults.conf",
             "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n")
    put_file(root, "/etc/rancher/k3s/config.yaml", 'token: secret\nkubelet-arg:\n  - "max-pods=250"\n')
    before = snapshot(root)
    _, plan = planned(host, ISOLATING)
    (config,) = kubelet_changes(plan)
    assert config.path == "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/90-nodeagent.conf"
    applied(host, ISOLATING)
    assert discover(host).kubelet.cpu_manager_policy == "static"
    assert (root / "etc/rancher/k3s/config.yaml").read_text().startswith("token: secret")
    assert revert(host).exit_code == 0
    assert snapshot(root) == before


def test_older_k3s_gets_appended_kubelet_args(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    (root / "var/lib/nodeagent").mkdir(parents=True)  # as on a host nodeagent is installed on
    put_file(root, "/etc/rancher/k3s/config.yaml", 'token: secret\nkubelet-arg:\n  - "cpu-manager-policy=none"\n')
    before = snapshot(root)
    spec = {**ISOLATING, "kubelet": {"memoryManagerPolicy": "Static"}}
    _, plan = planned(host, spec)
    config = kubelet_changes(plan)[0]
    assert config.path == "/etc/rancher/k3s/config.yaml.d/90-nodeagent.yaml"
    applied(host, spec)
    args = loaded(root, config.path)["kubelet-arg+"]
    assert args == ["cpu-manager-policy=static", "reserved-cpus=0,4", "memory-manager-policy=Static",
                    "reserved-memory=0:memory=100Mi"]  # evictionHard's default 100Mi: no reservations here
    assert (root / "etc/rancher/k3s/config.yaml.d/90-nodeagent.yaml").stat().st_mode & 0o777 == 0o600
    info = discover(host).kubelet  # the appended flags win over config.yaml's cpu-manager-policy=none
    assert (info.cpu_manager_policy, info.memory_manager_policy) == ("static", "Static")
    _, again = planned(host, spec)
    assert kubelet_changes(again) == []  # converged
    assert revert(host).exit_code == 0
    assert snapshot(root) == before  # config.yaml.d, which apply created, is gone again


# --- what is left alone ----------------------------------------------------------------------------


def test_manage_false_and_no_kubelet_leave_the_kubelet_alone(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    _, plan = planned(host, ISOLATING)  # no kubelet configuration yet: nothing, not even a skip
    assert kubelet_changes(plan) == [] and not [s for s in plan.skipped if s.subsystem == Subsystem.KUBELET]
    _, plan = planned(host, {**ISOLATING, "kubelet": {"cpuManagerPolicy": "static"}})
    (skip,) = [s for s in plan.skipped if s.subsystem == Subsystem.KUBELET]
    assert "not joined" in skip.reason
    kubeadm(root)
    _, plan = planned(host, {**ISOLATING, "kubelet": {"manage": False}})
    assert kubelet_changes(plan) == []
    _, plan = planned(host, {**ISOLATING, "kubelet": {"cpuManagerPolicy": "none"}})
    # Explicit none (what the kubelet has), even with isolated CPUs: only the reserved set is written.
    config = kubelet_changes(plan)[0]
    assert [r["key"] for r in config.detail["settings"]] == ["reservedSystemCPUs"]


def test_openshift_is_skipped_with_the_reason(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    put_file(root, "/etc/kubernetes/kubelet.conf", json.dumps({"kind": "KubeletConfiguration",
                                                               "cpuManagerPolicy": "none"}))
    _, plan = planned(host, ISOLATING)
    assert kubelet_changes(plan) == []
    (skip,) = [s for s in plan.skipped if s.subsystem == Subsystem.KUBELET]
    assert "PerformanceProfile" in skip.reason


# --- interlocks ----------------------------------------------------------------------------------


def test_reserved_cpus_that_are_isolated_are_refused_unless_forced(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root)
    spec = {**ISOLATING, "kubelet": {"reservedSystemCPUs": "0-1"}}
    _, plan = planned(host, spec)
    (refusal,) = plan.refusals
    assert refusal.forceable and "reserved CPUs 1 are isolated" in refusal.reason
    before = snapshot(root)
    assert applied(host, spec).exit_code == 2
    assert snapshot(root) == before
    _, forced = planned(host, spec, force=True)
    assert not forced.refusals and forced.forced


def test_single_numa_node_needs_a_reserved_cpu_on_every_node(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root)
    spec = {"cpu": {"reserved": "0-1"}, "kubelet": {"cpuManagerPolicy": "static",
                                                    "topologyManagerPolicy": "single-numa-node"}}
    _, plan = planned(host, spec)
    (refusal,) = plan.refusals
    assert refusal.target == "node1" and "single-numa-node" in refusal.reason and refusal.forceable


def test_static_memory_manager_with_reserved_memory_not_summing_is_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root)
    spec = {**ISOLATING, "kubelet": {"memoryManagerPolicy": "Static",
                                     "reservedMemory": [{"numaNode": 0, "memory": "600Mi"},
                                                        {"numaNode": 1, "memory": "400Mi"}]}}
    _, plan = planned(host, spec)
    (refusal,) = plan.refusals
    assert "1100Mi" in refusal.reason and "1000Mi" in refusal.reason and refusal.forceable
    spec["kubelet"]["reservedMemory"][1]["memory"] = "500Mi"
    _, plan = planned(host, spec)
    assert not plan.refusals
    rows = {r["key"]: r["desired"] for r in kubelet_changes(plan)[0].detail["settings"]}
    assert rows["reservedMemory"] == "node0 memory=600Mi; node1 memory=500Mi"


# --- the profile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kubelet", "message"), [
    ({"cpuManagerPolicy": "Static"}, "spec.kubelet.cpuManagerPolicy: 'Static' is not one of none, static"),
    ({"memoryManagerPolicy": "static"}, "spec.kubelet.memoryManagerPolicy: 'static' is not one of None, Static"),
    ({"topologyManagerScope": "node"}, "spec.kubelet.topologyManagerScope: 'node' is not one of container, pod"),
    ({"cpuManagerPolicyOptions": {"full-pcpu-only": "true"}},
     "spec.kubelet.cpuManagerPolicyOptions.full-pcpu-only: unknown option (accepted: full-pcpus-only"),
    ({"cpuManagerPolicyOptions": {"full-pcpus-only": "yes"}},
     "spec.kubelet.cpuManagerPolicyOptions.full-pcpus-only: 'yes' is not \"true\" or \"false\""),
    ({"cpuManagerPolicy": "none", "cpuManagerPolicyOptions": {"full-pcpus-only": "true"}},
     "spec.kubelet.cpuManagerPolicyOptions: only meaningful with cpuManagerPolicy: static"),
    ({"reservedMemory": [{"numaNode": 0, "memory": "1Gi"}]},
     "spec.kubelet.reservedMemory: only meaningful with memoryManagerPolicy: Static"),
    ({"memoryManagerPolicy": "Static", "reservedMemory": [{"numaNode": 0, "memory": "lots"}]},
     "spec.kubelet.reservedMemory[0].memory: 'lots' is not a memory quantity"),
    ({"manage": False, "cpuManagerPolicy": "static"},
     "spec.kubelet.cpuManagerPolicy: only meaningful with manage: true"),
    ({"reservedSystemCPUs": "0-99"}, "spec.kubelet.reservedSystemCPUs: CPU"),
    ({"cpuManagerPolicyy": "static"}, "spec.kubelet.cpuManagerPolicyy: unknown field"),
])
def test_bad_kubelet_fields_name_the_field_and_the_accepted_form(make_host, kubelet: dict[str, Any],
                                                                  message: str) -> None:  # type: ignore[no-untyped-def]
    host, _, _ = make_host(TreeSpec(cpus=8, nodes=2))
    with pytest.raises(ProfileError) as caught:
        parse_profile_text(yaml.safe_dump(profile_doc({"kubelet": kubelet})), discover(host))
    assert any(e.startswith(message) for e in caught.value.errors), caught.value.errors


def test_cli_bad_input_exits_2_and_interlocks_exit_1_writing_nothing(make_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root)
    before = snapshot(root)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(profile_doc({"kubelet": {"topologyManagerPolicy": "numa"}})))
    runner = CliRunner()
    result = runner.invoke(main, ["--root", str(root), "apply", "-f", str(bad), "--yes"])
    assert result.exit_code == 2
    assert "spec.kubelet.topologyManagerPolicy: 'numa' is not one of none, best-effort, restricted, " \
           "single-numa-node" in result.output
    refused = tmp_path / "refused.yaml"
    refused.write_text(yaml.safe_dump(profile_doc({**ISOLATING, "kubelet": {"reservedSystemCPUs": "0-1"}})))
    assert runner.invoke(main, ["--root", str(root), "plan", "-f", str(refused)]).exit_code == 1
    assert runner.invoke(main, ["--root", str(root), "apply", "-f", str(refused), "--yes"]).exit_code == 2
    assert snapshot(root) == before
    plan = runner.invoke(main, ["--root", str(root), "plan", "-f", str(refused), "-o", "json", "--force"])
    changes = json.loads(plan.output)["changes"]
    assert changes[0]["detail"]["settings"][1] == {"key": "reservedSystemCPUs", "current": "(unset)",
                                                   "desired": "0-1"}
    assert journal(root) is None


def test_a_setting_a_kubelet_flag_holds_is_refused_not_written_where_it_would_not_count(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    put_file(root, "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/00-k3s-defaults.conf",
             "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n")
    put_file(root, "/etc/rancher/k3s/config.yaml", 'kubelet-arg:\n  - "reserved-cpus=0-1"\n'
             '  - "cpu-manager-policy-options=full-pcpus-only=true"\n')
    _, plan = planned(host, ISOLATING)
    (refusal,) = plan.refusals
    assert refusal.target == "reservedSystemCPUs" and "/etc/rancher/k3s/config.yaml" in refusal.reason
    assert not refusal.forceable


def test_fixture_host_kubeadm_kubelet_single_numa_node_and_memory_manager(fresh_host_tree) -> None:  # type: ignore[no-untyped-def]
    """intel-2s-8gpu (fixtures/specs): kubeadm's config.yaml as hostgen writes it (static CPU manager,
    reserved 0-1,112-113 all on NUMA node 0, topology restricted, memory manager None)."""
    root = fresh_host_tree("intel-2s-8gpu")
    put_file(root, "/var/lib/kubelet/cpu_manager_state", CPU_STATE)
    put_file(root, "/var/lib/kubelet/memory_manager_state", MEMORY_STATE)
    host = Host(str(root))
    before = snapshot(root)
    spec: dict[str, Any] = {"kubelet": {"topologyManagerPolicy": "single-numa-node", "memoryManagerPolicy": "Static"}}
    _, plan = planned(host, spec)
    (refusal,) = plan.refusals  # node 1 has no reserved CPU: refused under single-numa-node
    assert refusal.target == "node1" and refusal.forceable
    spec["kubelet"]["reservedSystemCPUs"] = "0,56"
    _, plan = planned(host, spec)
    assert not plan.refusals
    config = kubelet_changes(plan)[0]
    assert config.path == "/var/lib/kubelet/config.yaml" and config.detail["mechanism"] == "edit"
    assert {r["key"]: (r["current"], r["desired"]) for r in config.detail["settings"]} == {
        "reservedSystemCPUs": ("0-1,112-113", "0,56"),
        "topologyManagerPolicy": ("restricted", "single-numa-node"),
        "memoryManagerPolicy": ("None", "Static"),
        "reservedMemory": ("(unset)", "node0 memory=100Mi")}  # evictionHard memory.available only
    assert [c.path for c in kubelet_changes(plan)[1:]] == ["/var/lib/kubelet/cpu_manager_state",
                                                           "/var/lib/kubelet/memory_manager_state"]
    result = applied(host, spec)
    assert not result.failure
    info = discover(host).kubelet
    assert (info.reserved_system_cpus, info.topology_manager_policy, info.memory_manager_policy) == (
        [0, 56], "single-numa-node", "Static")
    assert revert(host).exit_code == 0
    assert snapshot(root) == before


def test_boot_unit_removes_the_state_files_before_kubelet_an_operator_apply_does_not(make_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Through the CLI, on a tree without a process table (whether kubelet runs is unknown): `apply` defers
    the state-file step, `apply --boot` (nodeagent-prep.service, ordered before kubelet) performs it."""
    _, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root, config_dir=True)
    shutil.rmtree(root / "proc/1")
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(profile_doc({"cpu": {"reserved": "0,4"},
                                                   "kubelet": {"cpuManagerPolicy": "static"}})))
    runner = CliRunner()
    plan = runner.invoke(main, ["--root", str(root), "plan", "-f", str(profile)])
    assert plan.exit_code == 0
    assert "kubelet state files: /var/lib/kubelet/cpu_manager_state -> removed before kubelet starts" in plan.output
    result = runner.invoke(main, ["--root", str(root), "apply", "-f", str(profile), "--yes"])
    assert result.exit_code == 3 and "drain the node first" in result.output
    assert (root / "var/lib/kubelet/cpu_manager_state").exists()
    boot = runner.invoke(main, ["--root", str(root), "apply", "--boot", "-f", str(profile)])
    assert boot.exit_code == 0, boot.output
    assert not (root / "var/lib/kubelet/cpu_manager_state").exists()
    assert not (root / KUBELET_STATE_PENDING_PATH.lstrip("/")).exists()
    assert runner.invoke(main, ["--root", str(root), "revert", "--yes"]).exit_code == 0
    assert (root / "var/lib/kubelet/cpu_manager_state").read_text() == CPU_STATE
    assert not (root / "etc/kubernetes/kubelet.conf.d/90-nodeagent.conf").exists()


def test_a_kubelet_already_as_asked_is_not_refused(make_host) -> None:  # type: ignore[no-untyped-def]
    """The interlocks judge what nodeagent would write: a converged kubelet, even one they would refuse
    to create (single-numa-node with node 1 without a reserved CPU), blocks nothing else."""
    host, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    put_file(root, "/var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\ncpuManagerPolicy: static\n"
             "reservedSystemCPUs: 0-1\ntopologyManagerPolicy: single-numa-node\n")
    spec = {"cpu": {"reserved": "0-1"}, "kubelet": {"topologyManagerPolicy": "single-numa-node"},
            "ksm": {"enabled": True}}
    _, plan = planned(host, spec)
    assert not plan.refusals and kubelet_changes(plan) == []
    assert [c.target for c in plan.changes if c.subsystem == "ksm"] == ["ksm run"]


def test_dry_run_lists_the_writes_and_makes_none(make_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, root = make_host(TreeSpec(cpus=8, nodes=2))
    kubeadm(root)
    before = snapshot(root)
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(profile_doc(ISOLATING)))
    result = CliRunner().invoke(main, ["--root", str(root), "apply", "--dry-run", "-f", str(profile)])
    assert result.exit_code == 3, result.output
    assert "file /var/lib/kubelet/config.yaml" in result.output
    assert "remove /var/lib/kubelet/cpu_manager_state" in result.output
    assert snapshot(root) == before and journal(root) is None
