"""Discovery on every CPU architecture KubeVirt hosts run (and the x86 hosts), against real peers on the same tree.

Fixture hosts (fixtures/specs): arm64-altra (2P Ampere Altra class, shared cppc policies),
arm64-grace-hopper (GH200: a memory-only GPU node), ppc64le-power9 (PowerNV, chip/node ids 0 and 8,
SMT4, per-core powernv policies), s390x-lpar (z15, standby CPUs). Real peers: ``lscpu --sysroot``
(util-linux), ``lstopo-no-graphics`` with ``HWLOC_FSROOT`` (hwloc), and node_exporter with
``--path.sysfs/--path.procfs`` (cpufreq and NUMA meminfo collectors).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fixtures.hostgen import build_host, load_spec
from nodeagent.checks import run_checks
from nodeagent.discover import discover
from nodeagent.discover.cpuid import identify, parse_cpuinfo
from nodeagent.host import Host
from nodeagent.inventory import Inventory
from nodeagent.parse import parse_cpu_words, parse_cpulist

ARCH_HOSTS = ["arm64-altra", "arm64-grace-hopper", "ppc64le-power9", "s390x-lpar"]
X86_HOSTS = ["intel-2s-8gpu", "amd-nps4-consumer", "rt-isolated", "desktop-no-iommu", "minimal"]
ALL_HOSTS = ARCH_HOSTS + X86_HOSTS


@pytest.fixture(scope="module")
def arch_inventories(host_trees) -> dict[str, Inventory]:
    return {name: discover(Host(str(host_trees(name)))) for name in ALL_HOSTS}


def _build(tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    _, spec = load_spec(name)
    spec = copy.deepcopy(spec)
    change(spec)
    return build_host(spec, tmp_path / "host")


# --- lscpu, lstopo and node_exporter on the same trees --------------------------------------------


def _lscpu(root: Path) -> tuple[dict[str, str], list[list[str]]]:
    summary = json.loads(subprocess.run(["lscpu", "--sysroot", str(root), "-J"], capture_output=True,
                                        text=True, check=True).stdout)
    fields = {row["field"].rstrip(":"): row["data"] for row in summary["lscpu"]}
    parsable = subprocess.run(["lscpu", "--sysroot", str(root), "-p=CPU,CORE,SOCKET,NODE"], capture_output=True,
                              text=True, check=True).stdout
    return fields, [line.split(",") for line in parsable.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_cpus_and_nodes_match_lscpu(name: str, host_trees, arch_inventories) -> None:
    """util-linux lscpu reads the same tree: counts, online list, topology, NUMA and model name."""
    inv = arch_inventories[name]
    fields, rows = _lscpu(host_trees(name))
    cpu = inv.cpu
    assert cpu.logical_cpus == int(fields["CPU(s)"])
    assert cpu.online == parse_cpulist(fields["On-line CPU(s) list"])
    assert cpu.threads_per_core == int(fields["Thread(s) per core"])
    if "Socket(s)" in fields:
        assert cpu.sockets == int(fields["Socket(s)"])
    per_package: dict[str, set[str]] = {}
    for _cpu, core, package, _node in rows:
        if core != "":  # offline CPUs have no topology
            per_package.setdefault(package, set()).add(core)
    assert sorted(cpu.cores_per_package.values()) == sorted(len(c) for c in per_package.values())
    nodes = {k.split()[1]: v for k, v in fields.items() if k.startswith("NUMA node") and k.endswith("CPU(s)")}
    assert int(fields["NUMA node(s)"]) == len(inv.numa)
    for node in inv.numa:
        listed = nodes[f"node{node.id}"]
        assert node.cpus == ([] if listed in (None, "") else parse_cpulist(listed)), node.id
    if fields.get("Model name", "-") != "-":
        assert cpu.model_name == fields["Model name"]
    if "Vendor ID" in fields:
        assert cpu.vendor == fields["Vendor ID"]
    if "Machine type" in fields:  # s390: lscpu prints no model name, only the machine type
        assert cpu.model_name and fields["Machine type"] in cpu.model_name
    product = (cpu.cores_per_socket or 0) * cpu.sockets * cpu.threads_per_core
    assert cpu.cores_per_socket is None or product == len(cpu.online)


def _lstopo(root: Path) -> dict[str, int]:
    env = {**os.environ, "HWLOC_FSROOT": str(root), "HWLOC_COMPONENTS": "linux,-x86"}
    out = subprocess.run(["lstopo-no-graphics", "--of", "console", "--no-caches"], capture_output=True, text=True,
                         env=env, check=True).stdout
    # "Package L#0", "NUMANode L#1 (P#8 255GB)", "Core L#3 + PU L#3 (P#3)"
    return {kind: sum(line.count(f"{label} L#") for line in out.splitlines())
            for kind, label in (("pu", "PU"), ("core", "Core"), ("package", "Package"), ("numanode", "NUMANode"))}


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_topology_matches_lstopo(name: str, host_trees, arch_inventories) -> None:
    """hwloc's Linux backend reads the tree through HWLOC_FSROOT: PUs, cores, packages, NUMA nodes."""
    inv = arch_inventories[name]
    counts = _lstopo(host_trees(name))
    assert counts["pu"] == len(inv.cpu.online)
    assert counts["core"] == inv.cpu.cores
    assert counts["package"] == inv.cpu.sockets
    assert counts["numanode"] == len(inv.numa)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_exporter(root: Path) -> str:
    port = _free_port()
    proc = subprocess.Popen(["prometheus-node-exporter", f"--path.sysfs={root}/sys", f"--path.procfs={root}/proc",
                             f"--path.rootfs={root}", "--collector.disable-defaults", "--collector.cpufreq",
                             "--collector.meminfo_numa", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    return str(response.read().decode())
            except OSError:
                time.sleep(0.1)
        raise AssertionError("node_exporter did not answer")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _series(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels_text, value = line[len(metric) + 1:].rsplit("} ", 1)
            labels = dict(part.split("=", 1) for part in labels_text.split(","))
            out.append(({k: v.strip('"') for k, v in labels.items()}, float(value)))
    return out


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_cpufreq_and_numa_memory_match_node_exporter(name: str, host_trees, arch_inventories) -> None:
    """node_exporter's cpufreq collector walks cpuN/cpufreq; its meminfo_numa collector reads nodeN/meminfo."""
    inv = arch_inventories[name]
    metrics = _node_exporter(host_trees(name))
    governed = {int(labels["cpu"]) for labels, _ in _series(metrics, "node_cpu_scaling_frequency_hertz")}
    assert governed == {c for p in inv.cpu.cpufreq_policies for c in p.cpus}
    assert governed == {c for cpus in inv.cpu.governors.values() for c in cpus}
    totals = {int(labels["node"]): v for labels, v in _series(metrics, "node_memory_numa_MemTotal")}
    assert totals == {n.id: n.memory_total_bytes for n in inv.numa}


# --- what each architecture's files say -----------------------------------------------------------


def test_arm64_shared_policies_cover_every_cpu(arch_inventories) -> None:
    cpu = arch_inventories["arm64-altra"].cpu
    assert [p.name for p in cpu.cpufreq_policies] == ["policy0", "policy128"]
    assert cpu.cpufreq_policies[1].cpus == list(range(128, 256))
    assert cpu.governors == {"schedutil": list(range(256))} and cpu.governor == "schedutil"
    assert (cpu.architecture, cpu.vendor, cpu.model_name) == ("aarch64", "ARM", "Neoverse-N1")
    assert not arch_inventories["arm64-altra"].warnings


def test_grace_hopper_memory_only_node_is_a_fact(arch_inventories) -> None:
    inv = arch_inventories["arm64-grace-hopper"]
    assert [(n.id, n.cpus_source) for n in inv.numa] == [(0, "cpulist"), (1, "cpulist")]
    assert inv.numa[1].cpus == [] and inv.numa[1].memory_total_bytes == 100663296 * 1024
    assert inv.cpu.model_name == "Neoverse-V2" and not inv.warnings


def test_power9_chip_and_node_ids(arch_inventories) -> None:
    inv = arch_inventories["ppc64le-power9"]
    assert sorted(inv.cpu.packages) == [0, 8] and [n.id for n in inv.numa] == [0, 8]
    assert inv.cpu.thread_siblings[0] == [0, 1, 2, 3]  # SMT4 threads are consecutive on POWER
    assert len(inv.cpu.cpufreq_policies) == 32 and inv.cpu.cpufreq_policies[1].cpus == [4, 5, 6, 7]
    assert (inv.cpu.architecture, inv.cpu.vendor) == ("ppc64le", "IBM")


def test_s390_present_and_online_are_separate(arch_inventories) -> None:
    inv = arch_inventories["s390x-lpar"]
    assert inv.cpu.present == list(range(12)) and inv.cpu.logical_cpus == 12
    assert inv.cpu.online == list(range(10))
    assert inv.cpu.virtualization == "sie" and inv.cpu.model_name == "IBM z15 (8561)"
    statuses = {r.id: r.status for r in run_checks(inv)}
    assert statuses["hardware-virtualization"] == "PASS"


@pytest.mark.parametrize("name", ["arm64-altra", "ppc64le-power9"])
def test_flagless_architectures_pass_hardware_virtualization_on_kvm(name: str, arch_inventories) -> None:
    results = {r.id: r for r in run_checks(arch_inventories[name])}
    assert results["hardware-virtualization"].status == "PASS"
    assert "vmx" not in results["hardware-virtualization"].reason


def test_uneven_packages_report_per_package_cores(tmp_path: Path) -> None:
    """arm64 clusters 3+4+1 (physical_package_id 0,0,0,1,1,1,1,2): no product that disagrees with the CPUs."""
    def change(spec: dict[str, Any]) -> None:
        spec["cpu"].update(sockets=3, packages=[3, 4, 1], parts=[{"implementer": 0x41, "part": 0xD46},
                                                               {"implementer": 0x41, "part": 0xD47},
                                                               {"implementer": 0x41, "part": 0xD4E}])
        spec["cpu"]["cpufreq"]["shared"] = "package"
        spec["numa"] = {"nodes_per_socket": 1, "node_ids": [0, 0, 0]}
        spec["memory"] = {"node_kb": [8000000], "used_percent": 5}

    root = _build(tmp_path, "arm64-altra", change)
    cpu = discover(Host(str(root))).cpu
    assert cpu.cores_per_package == {0: 3, 1: 4, 2: 1} and cpu.cores == 8
    assert cpu.cores_per_socket is None and cpu.logical_cpus == 8
    assert cpu.model_names == ["Cortex-A510", "Cortex-A710", "Cortex-X3"]
    assert cpu.governors == {"schedutil": list(range(8))}
    fields, _ = _lscpu(root)
    assert int(fields["CPU(s)"]) == 8 and fields["Vendor ID"] == cpu.vendor == "ARM"


def test_kernels_without_policy_directories(tmp_path: Path) -> None:
    """Before policyN: each policy in its owner's cpuN/cpufreq/, the other CPUs' cpufreq links to it."""
    def change(spec: dict[str, Any]) -> None:
        spec["cpu"]["cpufreq"]["layout"] = "legacy"

    root = _build(tmp_path, "arm64-altra", change)
    assert not (root / "sys/devices/system/cpu/cpufreq/policy0").exists()
    host = Host(str(root))
    cpu = discover(host).cpu
    assert [p.path for p in cpu.cpufreq_policies] == ["/sys/devices/system/cpu/cpu0/cpufreq",
                                                      "/sys/devices/system/cpu/cpu128/cpufreq"]
    assert cpu.governors == {"schedutil": list(range(256))}
    assert cpu.cpufreq_driver == "cppc_cpufreq"


def test_numa_cpus_fall_back_from_cpulist_to_cpumap_to_links(tmp_path: Path) -> None:
    root = build_host("arm64-altra", tmp_path / "host")
    node0, node1 = root / "sys/devices/system/node/node0", root / "sys/devices/system/node/node1"
    (node0 / "cpulist").unlink()
    (node1 / "cpulist").unlink()
    (node1 / "cpumap").unlink()
    inv = discover(Host(str(root)))
    assert [(n.cpus_source, n.cpus) for n in inv.numa] == [("cpumap", list(range(128))),
                                                           ("links", list(range(128, 256)))]
    assert sum("cpulist: not present" in w for w in inv.warnings) == 2
    for link in node1.glob("cpu*"):
        link.unlink()
    inv = discover(Host(str(root)))
    assert inv.numa[1].cpus == [] and inv.numa[1].cpus_source is None
    assert any("node1/cpulist" in w and "unknown" in w for w in inv.warnings)


def test_prep_sees_every_cpu_of_a_shared_policy(host_trees) -> None:
    from tests.prep.helpers import planned

    host = Host(str(host_trees("arm64-altra")), dry_run=True)
    _, plan = planned(host, {"cpu": {"governor": "performance"}})
    changes = [c for c in plan.changes if c.subsystem == "cpu-governor"]
    assert [c.path for c in changes] == ["/sys/devices/system/cpu/cpufreq/policy0/scaling_governor",
                                         "/sys/devices/system/cpu/cpufreq/policy128/scaling_governor"]


# --- cpuinfo of the other architectures, as their kernels print it -----------------------------------

RISCV = """processor\t: 0
hart\t\t: 1
isa\t\t: rv64imafdc_zicntr_zicsr_zifencei_zihpm
mmu\t\t: sv39
uarch\t\t: sifive,u74-mc
mvendorid\t: 0x489
marchid\t\t: 0x8000000000000007
mimpid\t\t: 0x4210427

"""
LOONGARCH = """system type\t\t: generic-loongson-machine

processor\t\t: 0
package\t\t\t: 0
core\t\t\t: 0
global_id\t\t: 0
CPU Family\t\t: Loongson-64bit
Model Name\t\t: Loongson-3A5000
CPU Revision\t\t: 0x10
FPU Revision\t\t: 0x00
CPU MHz\t\t\t: 2500.00

"""


def test_riscv_and_loongarch_model_names() -> None:
    riscv = identify(parse_cpuinfo(RISCV))
    assert (riscv.architecture, riscv.model_names) == ("riscv64", ["sifive,u74-mc"])
    loong = identify(parse_cpuinfo(LOONGARCH))
    assert (loong.architecture, loong.vendor, loong.model_names) == ("loongarch64", "Loongson", ["Loongson-3A5000"])


def test_cpufreq_cpu_lists_are_space_separated() -> None:
    assert parse_cpu_words("0 1 2 3 \n") == [0, 1, 2, 3]
    assert parse_cpu_words("4-7") == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="separated by spaces"):
        parse_cpu_words("0 x 2")


# --- unprivileged: "not readable by this user" is not "absent" ----------------------------------------

NOBODY = 65534


def _as_nobody(function: Callable[[], Any]) -> Any:
    """Run ``function`` in a child that dropped root (or directly when already unprivileged)."""
    if os.geteuid() != 0:
        return function()
    import yaml  # noqa: F401  (imported before dropping root: site-packages may be root-only)

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write_fd, json.dumps(function()).encode())
            status = 0
        except BaseException:
            os.write(write_fd, json.dumps({"error": traceback.format_exc()}).encode())
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks))
    assert status == 0, result
    return result


def test_unprivileged_root_only_kvm_and_kubelet_config(tmp_path: Path, host_trees) -> None:
    """/dev/kvm 0600 root and a 0600 kubelet config: no FAIL of hardware virtualization, no 'absent'."""
    world = Path(shutil.copytree(host_trees("arm64-altra"), tmp_path / "host", symlinks=True))
    world.chmod(0o755)
    for directory in (tmp_path, *tmp_path.parents):
        if directory == Path("/"):
            break
        if not os.access(directory, os.X_OK, effective_ids=False) or directory.stat().st_mode & 0o005 != 0o005:
            directory.chmod(directory.stat().st_mode | 0o005)
    (world / "dev/kvm").chmod(0o600)
    config = world / "var/lib/kubelet/config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("kind: KubeletConfiguration\ncpuManagerPolicy: static\n")
    config.chmod(0o600)

    def look() -> dict[str, Any]:
        inv = discover(Host(str(world)))
        return {"unreadable": inv.unreadable, "privileged": inv.privileged, "kvm": inv.kvm.to_dict(),
                "kubelet": inv.kubelet.to_dict(), "checks": {r.id: r.status for r in run_checks(inv)}}

    seen = _as_nobody(look)
    assert seen["privileged"] is False
    assert {"/dev/kvm", "/var/lib/kubelet/config.yaml"} <= set(seen["unreadable"])
    assert seen["kvm"]["available"] is True and seen["kvm"]["accessible"] is False
    assert seen["kubelet"]["config_present"] is True and seen["kubelet"]["config_readable"] is False
    assert seen["kubelet"]["cpu_manager_policy"] is None
    assert seen["checks"]["hardware-virtualization"] == "PASS"
    assert seen["checks"]["kvm-accessible"] == "WARN" and seen["checks"]["host-files-access"] == "WARN"
