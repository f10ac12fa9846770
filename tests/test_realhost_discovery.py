"""Discovery of this very machine, checked against the tools operators already trust.

Real peers: ``lscpu`` (util-linux), ``numactl -H`` (apt numactl), the kernel's own sysfs
counters and the ``KVM_GET_API_VERSION`` ioctl. Read-only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.parse import parse_cpulist

pytestmark = pytest.mark.realhost


@pytest.fixture(scope="module")
def live():
    return discover(Host("/"))


def _lscpu() -> dict[str, str]:
    out = json.loads(subprocess.run(["lscpu", "-J"], capture_output=True, text=True, check=True).stdout)
    return {row["field"].rstrip(":"): row["data"] for row in out["lscpu"]}


def test_cpus_match_lscpu(live) -> None:
    lscpu = _lscpu()
    assert live.cpu.logical_cpus == int(lscpu["CPU(s)"])
    assert live.cpu.online == parse_cpulist(lscpu["On-line CPU(s) list"])
    assert live.cpu.vendor == lscpu["Vendor ID"]
    assert live.cpu.model_name == lscpu["Model name"]
    assert live.cpu.threads_per_core == int(lscpu["Thread(s) per core"])
    assert live.cpu.cores_per_socket == int(lscpu["Core(s) per socket"])
    assert live.cpu.sockets == int(lscpu["Socket(s)"])
    assert set(live.cpu.flags) == set(lscpu["Flags"].split())


@pytest.mark.skipif(not shutil.which("numactl"), reason="numactl is installed by tests/run.sh")
def test_numa_matches_numactl(live) -> None:
    out = subprocess.run(["numactl", "-H"], capture_output=True, text=True, check=True).stdout
    nodes = int(re.search(r"available: (\d+) nodes", out).group(1))
    assert len(live.numa) == nodes
    for node in live.numa:
        cpus = re.search(rf"^node {node.id} cpus:(.*)$", out, re.M).group(1).split()
        assert node.cpus == [int(c) for c in cpus]
        size_mb = int(re.search(rf"^node {node.id} size: (\d+) MB", out, re.M).group(1))
        assert node.memory_total_bytes // 2**20 == size_mb
    distances = [line.split(":")[1].split() for line in out.splitlines() if re.match(r"^\s+\d+:", line)]
    assert [n.distances for n in live.numa] == [[int(d) for d in row] for row in distances]


def test_per_node_hugepages_match_sysfs(live) -> None:
    for node in live.numa:
        base = Path(f"/sys/devices/system/node/node{node.id}/hugepages")
        sizes = {p.name for p in base.iterdir()}
        assert len(node.hugepages) == len(sizes)
        for pool in node.hugepages.values():
            directory = base / f"hugepages-{pool.size_kb}kB"
            assert pool.total == int((directory / "nr_hugepages").read_text())
            assert pool.free == int((directory / "free_hugepages").read_text())


def test_kvm_api_version_by_ioctl(live) -> None:
    if not Path("/dev/kvm").exists():
        pytest.skip("this machine has no /dev/kvm")
    assert live.kvm.device == "char"
    assert live.kvm.api_version == 12
    assert live.kvm.max_vcpus and live.kvm.max_vcpus >= live.kvm.recommended_vcpus


def test_ksm_counters_match_sysfs(live) -> None:
    assert live.ksm.run == int(Path("/sys/kernel/mm/ksm/run").read_text())
    assert live.ksm.pages_to_scan == int(Path("/sys/kernel/mm/ksm/pages_to_scan").read_text())


def test_cmdline_and_release(live) -> None:
    assert live.kernel.cmdline == Path("/proc/cmdline").read_text().strip()
    uname = subprocess.run(["uname", "-r"], capture_output=True, text=True, check=True)
    assert live.kernel.release == uname.stdout.strip()
