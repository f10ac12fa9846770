"""A bounded soak: ``serve`` under a stream of injected faults, then recovery.

Faults, in rotation for ``NODEAGENT_SOAK_S`` seconds (default 60):

* the API server answers 503 (and drops connections) to node and topology requests;
* libvirtd is restarted under the VM collector (when this machine has one);
* sysfs files and whole device directories vanish from the fixture root, or turn to garbage,
  and come back;
* uevents arrive for all of it, and the reconcile period is 2 s.

Throughout, /metrics and /healthz must answer 200. At the end, with the faults gone: no crash,
no reconcile step that raised, RSS flat within 10% after warm-up (threads and fds flat too), the
node ready again, labels published and the profile converged.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

import psutil
import pytest

from tests.support.exposition import scrape_value
from tests.support.serve import NODE, drop_uevent
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.k8s]

SOAK_S = float(os.environ.get("NODEAGENT_SOAK_S", "60"))
WARM_UP_S = min(15.0, SOAK_S / 4)
LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")


def _libvirtd_pid() -> int | None:
    try:
        pid = int(LIBVIRTD_PIDFILE.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _restart_libvirtd() -> None:
    pid = _libvirtd_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: _libvirtd_pid() is None, 30, "libvirtd to stop")
    subprocess.run(["libvirtd", "-d"], check=True, timeout=30)
    wait_for(lambda: Path("/run/libvirt/libvirt-sock-ro").exists() and _libvirtd_pid(), 30, "libvirtd to start")


class Vanisher:
    """Makes host files disappear (or go garbled) in a fixture tree, and puts them back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        gpu = os.path.realpath(root / "sys/bus/pci/devices/0000:9a:00.0")
        self.targets = [
            Path(gpu),  # a whole PCI device, its links left dangling
            root / "sys/kernel/mm/ksm/run",
            root / "sys/devices/system/node/node1/hugepages",
            root / "proc/meminfo",
            root / "sys/devices/system/cpu/cpu5/topology",
        ]
        self.garbled = root / "sys/devices/system/node/node0/hugepages/hugepages-1048576kB/free_hugepages"
        self.moved: list[tuple[Path, Path]] = []
        self.original_garbled = self.garbled.read_text()

    def vanish(self, index: int) -> str:
        target = self.targets[index % len(self.targets)]
        aside = target.with_name(f".soak-{target.name}")
        os.rename(target, aside)
        self.moved.append((aside, target))
        if index % 3 == 0:
            self.garbled.write_text("not-a-number\n")
        return str(target.relative_to(self.root))

    def restore(self) -> None:
        while self.moved:
            aside, target = self.moved.pop()
            os.rename(aside, target)
        self.garbled.write_text(self.original_garbled)


@pytest.fixture
def libvirtd() -> Iterator[bool]:
    """A system libvirtd to restart under the VM collector: True when this machine has one to offer.

    The collector talks to it through libvirt-python: a libvirtd without the binding is a missing
    peer (named, so that a strict run fails on it), not a VM collector that silently never comes up.
    """
    if shutil.which("libvirtd") is None or os.geteuid() != 0:
        yield False
        return
    try:
        import libvirt  # noqa: F401  (the binding the VM collector imports)
    except ImportError as exc:
        pytest.skip(f"libvirtd is installed but libvirt-python does not import ({exc}); "
                    "install it (tests/run.sh does) to soak the VM collector")
    started_here = _libvirtd_pid() is None
    if started_here:
        subprocess.run(["libvirtd", "-d"], check=True, timeout=30)
        wait_for(lambda: Path("/run/libvirt/libvirt-sock-ro").exists() and _libvirtd_pid(), 30, "libvirtd")
    try:
        yield True
    finally:
        pid = _libvirtd_pid()
        if started_here and pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: _libvirtd_pid() is None, 30, "libvirtd to stop")


def test_soak_with_faults_no_crash_no_leak_metrics_served(*, fresh_host_tree, apiserver, kubeconfig, profiles_dir,
                                                          serve_factory, tmp_path, libvirtd):
    root = fresh_host_tree("intel-2s-8gpu")
    apiserver.add_node(NODE, labels={"kubernetes.io/hostname": NODE, "nodeagent.io/pool": "database"})
    spool = tmp_path / "uevents"
    libvirt = libvirtd
    args = ["--profiles", str(profiles_dir), "--kubeconfig", kubeconfig, "--node-name", NODE, "--interval", "2",
            "--uevents", f"spool:{spool}", "--event-debounce", "0.1", "--api-backoff-max", "2", "--no-nvml",
            "--no-kubevirt"]
    if libvirt:  # the fixture root stands for a live host, so that libvirt is read
        args += ["--libvirt-uri", "qemu:///system"]
    serve = serve_factory(root, *args, env={"NODEAGENT_LIVE": "true"} if libvirt else None)
    serve.wait_serving()
    serve.wait_ready()
    process = psutil.Process(serve.proc.pid)
    if libvirt:
        wait_for(lambda: scrape_value(serve.get("/metrics")[1], "nodeagent_collector_up", collector="vm") == 1, 10,
                 "the VM collector up")

    vanisher = Vanisher(root)
    samples: list[tuple[float, int, int, int]] = []  # (t, rss, threads, fds)
    started = time.monotonic()
    step = 0
    libvirt_restarts = 0
    scrapes = 0
    try:
        while time.monotonic() - started < SOAK_S:
            step += 1
            apiserver.inject(status=503, times=2, resource="nodes")
            apiserver.inject(status=503, times=1, resource="noderesourcetopologies")
            if step % 5 == 0:
                apiserver.inject(drop=True, times=1, verb="watch")
            if step % 2:
                gone = vanisher.vanish(step // 2)
                drop_uevent(spool, f"remove pci /{gone}")
            else:
                vanisher.restore()
                drop_uevent(spool, "add pci /devices/pci0000:97/0000:97:00.0", "online cpu /devices/system/cpu/cpu5")
            apiserver.heartbeat(NODE)
            if libvirt and step % 15 == 0:
                _restart_libvirtd()
                libvirt_restarts += 1
            for path in ("/metrics", "/healthz"):
                status, body = serve.get(path, timeout=10)
                assert status == 200, f"{path} answered {status} during the soak: {body[:500]}\n{serve.log_text()}"
            scrapes += 1
            assert serve.proc.poll() is None, serve.log_text()
            samples.append((time.monotonic() - started, process.memory_info().rss, process.num_threads(),
                            process.num_fds()))
            time.sleep(0.5)
    finally:
        vanisher.restore()
        apiserver.faults.clear()

    # Recovery: faults gone, an operator's SIGHUP clears any prep back-off.
    serve.signal(signal.SIGHUP)
    serve.wait_ready(60)
    wait_for(lambda: scrape_value(serve.get("/metrics")[1], "nodeagent_prep_state", state="converged") == 1, 30,
             "prep converged again")
    text = serve.get("/metrics")[1]
    assert scrape_value(text, "nodeagent_reconcile_failures_total") == 0, serve.log_text()
    assert scrape_value(text, "nodeagent_numa_node_cpus", numa_node="1") == 112
    if libvirt:
        assert libvirt_restarts >= 1
        wait_for(lambda: scrape_value(serve.get("/metrics")[1], "nodeagent_collector_up", collector="vm") == 1, 30,
                 "the VM collector back up after libvirtd restarts")
    labels = apiserver.node(NODE)["metadata"]["labels"]
    assert labels["nodeagent.io/dedicated"] == "database" and labels["nodeagent.io/kvm"] in ("true", "false")
    assert (root / "sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages").read_text().strip() \
        == "32"
    faults_seen = apiserver.count(status=503)
    assert faults_seen >= 10, "the API faults were not exercised"

    steady = [s for s in samples if s[0] >= WARM_UP_S]
    assert len(steady) >= 10
    head, tail = steady[:5], steady[-5:]
    rss_start, rss_end = median(s[1] for s in head), median(s[1] for s in tail)
    assert rss_end <= rss_start * 1.10, f"RSS grew from {rss_start / 2**20:.1f} to {rss_end / 2**20:.1f} MiB"
    assert max(s[2] for s in tail) <= max(s[2] for s in head) + 2, "threads pile up"
    assert max(s[3] for s in tail) <= max(s[3] for s in head) + 4, "file descriptors leak"
    print(f"soak {SOAK_S:.0f}s: {step} fault rounds, {scrapes} scrapes, {faults_seen} API 503s, "
          f"{libvirt_restarts} libvirtd restarts; RSS {rss_start / 2**20:.1f} -> {rss_end / 2**20:.1f} MiB")
    assert serve.stop(30) == 0
    assert not [line for line in serve.lines if "Traceback" in line], serve.log_text()
