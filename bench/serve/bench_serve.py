"""Steady-state memory and CPU of ``nodeagent serve`` next to ``prometheus-node-exporter``.

Everything runs in the same run, on this machine, against its live root (``--root /``):

* ``prometheus-node-exporter`` with its default collectors;
* ``nodeagent serve`` in the deployments that matter:
  - ``systemd``: no cluster (``--no-publish``), libvirt and NVML as on a host (the systemd unit);
  - ``daemonset``: publishing to a real kube-apiserver (``tests/k8s/control-plane up DIR``: etcd,
    kube-apiserver, kube-scheduler, with ``daemonset/`` applied; ``down`` at the end) through the real
    kubernetes client, as the agent's own ServiceAccount (a token bound to a pod on this node, from
    ``tests/k8s/cluster.py``), via the tests' counting proxy; libvirt on: what the DaemonSet runs;
  - ``daemonset, MALLOC_ARENA_MAX=2``: the same with glibc's malloc arenas capped;
  - ``daemonset, in a pod``: the same, but configured as in a pod: the in-cluster config
    (``KUBERNETES_SERVICE_HOST``/``PORT``, the service-account token and CA bind-mounted at
    ``/var/run/secrets/kubernetes.io/serviceaccount`` in a private mount namespace, ``unshare -m``)
    against the same API server (the control plane's CA, the same proxy); needs root;
  - ``minimal``: ``--no-publish --no-libvirt --no-nvml`` (the floor: interpreter + discovery + metrics);
  - ``systemd, python -S``: the systemd variant in an interpreter that runs no ``.pth`` file of
    site-packages (those of the machine it runs on, not nodeagent's), for what the interpreter costs.

Both checkouts' ``nodeagent`` are compiled to bytecode first, as ``pip install`` does. Each exporter
is scraped every ``--scrape-interval`` seconds, as Prometheus would; the reconcile
period is the production default (60 s). After ``--warm-up`` seconds, RSS (``/proc/PID/status``
VmRSS through psutil), PSS (``smaps_rollup``: shared pages divided among the processes mapping them)
and CPU time are sampled every 5 s until ``--duration`` ends; CPU% is CPU seconds over wall seconds
of the steady window (100% = one core).

    python bench/serve/bench_serve.py --duration 600 --warm-up 60 --out bench/serve/out/run.json

``--baseline-tree DIR`` adds the systemd, minimal and two daemonset variants once more, run from
another checkout of nodeagent (e.g. ``git worktree add /tmp/before <commit>``): before/after in the
same run.

Writes a JSON file of every sample and prints the Markdown table that goes into RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from urllib.parse import urlsplit

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Subject:
    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    tree: Path = REPO  # the nodeagent checkout it runs from
    proc: subprocess.Popen[bytes] | None = None
    # (t, rss bytes, cpu seconds, pss bytes): PSS splits shared pages (libraries) among their users
    samples: list[tuple[float, int, float, int]] = field(default_factory=list)
    scrape_seconds: list[float] = field(default_factory=list)
    scrape_bytes: int = 0

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env.update(self.env)
        # cwd: ``python -m`` puts the working directory first on sys.path
        self.proc = subprocess.Popen(self.argv, env=env, cwd=self.tree, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self) -> None:
        started = time.perf_counter()
        with urllib.request.urlopen(self.url(), timeout=10) as response:
            self.scrape_bytes = len(response.read())
        self.scrape_seconds.append(time.perf_counter() - started)

    def sample(self, t: float) -> None:
        assert self.proc is not None
        process = psutil.Process(self.proc.pid)
        times = process.cpu_times()
        memory = process.memory_full_info()
        self.samples.append((t, memory.rss, times.user + times.system, memory.pss))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_up(subject: Subject, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            subject.scrape()
            return
        except OSError:
            if time.monotonic() > deadline or (subject.proc and subject.proc.poll() is not None):
                raise RuntimeError(f"{subject.name} did not come up on {subject.url()}") from None
            time.sleep(0.2)


def compile_bytecode(tree: Path) -> None:
    """Compile a checkout's nodeagent to bytecode (``__pycache__``, git-ignored), as pip does when it
    installs the package: otherwise every start compiles each module from source when the environment
    sets PYTHONDONTWRITEBYTECODE (this machine's does), and the compiler's garbage stays in the heap."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "nodeagent")], check=True)


def serve_argv(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nodeagent", "--root", "/", "serve", "--listen", f"127.0.0.1:{port}", *extra]


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_pod(argv: list[str], account: Path) -> list[str]:
    """``argv`` in a private mount namespace whose service-account directory is ``account``."""
    script = f'mount --bind "{account}" "{SERVICE_ACCOUNT}" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", *argv]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds in all (default 600)")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds before sampling (default 60)")
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "serve" / "out" / "run.json")
    parser.add_argument("--baseline-tree", type=Path, help="another nodeagent checkout to run the daemonset "
                        "variants from as well (before/after in one run)")
    args = parser.parse_args()

    from tests.k8s.cluster import AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, running

    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exporter is None:
        raise SystemExit("prometheus-node-exporter is not installed")
    node = socket.gethostname()
    for tree in (REPO, *([args.baseline_tree] if args.baseline_tree else [])):
        compile_bytecode(tree)
    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    with running(workdir / "control-plane") as api:  # control-plane up …; down on the way out
        api.add_node(node)
        kubeconfig = api.agent_kubeconfig(workdir / "kubeconfig", node)
        ports = [free_port() for _ in range(11)]
        daemonset = ["--kubeconfig", str(kubeconfig), "--node-name", node]
        account = workdir / "serviceaccount"
        account.mkdir()
        (account / "token").write_text(api.plane.token(AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, node=node))
        (account / "ca.crt").write_bytes((api.plane.pki / "ca.crt").read_bytes())
        (account / "namespace").write_text(AGENT_NAMESPACE)
        created_mountpoint = not SERVICE_ACCOUNT.exists()
        SERVICE_ACCOUNT.mkdir(parents=True, exist_ok=True)
        proxy_port = urlsplit(api.url).port
        pod_env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(proxy_port)}
        pod = ["--node-name", node]
        subjects = [
            Subject("prometheus-node-exporter", [exporter, f"--web.listen-address=127.0.0.1:{ports[0]}"], ports[0]),
            Subject("nodeagent serve (minimal: no cluster, no libvirt)",
                    serve_argv(ports[1], "--no-publish", "--no-libvirt", "--no-nvml"), ports[1]),
            Subject("nodeagent serve (systemd: no cluster, libvirt)", serve_argv(ports[2], "--no-publish"), ports[2]),
            # The same without the site module's .pth files (this machine's site-packages run some at every
            # start: an editable install's finder, a CA-injecting certifi hook); site-packages on PYTHONPATH.
            Subject("nodeagent serve (systemd, python -S: no .pth files)",
                    [sys.executable, "-S", *serve_argv(ports[10], "--no-publish")[1:]], ports[10],
                    env={"PYTHONPATH": os.pathsep.join([str(REPO), *site.getsitepackages()])}),
            Subject("nodeagent serve (daemonset: publishing, libvirt)", serve_argv(ports[3], *daemonset), ports[3]),
            Subject("nodeagent serve (daemonset, MALLOC_ARENA_MAX=2)", serve_argv(ports[4], *daemonset), ports[4],
                    env={"MALLOC_ARENA_MAX": "2"}),
            Subject("nodeagent serve (daemonset, in a pod: in-cluster config)",
                    in_pod(serve_argv(ports[5], *pod), account), ports[5], env=pod_env),
        ]
        if args.baseline_tree:
            subjects += [
                Subject("baseline: minimal", serve_argv(ports[8], "--no-publish", "--no-libvirt", "--no-nvml"),
                        ports[8], tree=args.baseline_tree.resolve()),
                Subject("baseline: systemd (no cluster, libvirt)", serve_argv(ports[9], "--no-publish"), ports[9],
                        tree=args.baseline_tree.resolve()),
                Subject("baseline: daemonset (publishing, libvirt)", serve_argv(ports[6], *daemonset), ports[6],
                        tree=args.baseline_tree.resolve()),
                Subject("baseline: daemonset, in a pod", in_pod(serve_argv(ports[7], *pod), account), ports[7],
                        env=pod_env, tree=args.baseline_tree.resolve()),
            ]
        try:
            for subject in subjects:
                subject.start()
            for subject in subjects:
                wait_up(subject)
            started = time.monotonic()
            stop = threading.Event()

            def scraper() -> None:
                while not stop.is_set():
                    for subject in subjects:
                        subject.scrape()
                    stop.wait(args.scrape_interval)

            thread = threading.Thread(target=scraper, daemon=True)
            thread.start()
            while (elapsed := time.monotonic() - started) < args.duration:
                if elapsed >= args.warm_up:
                    for subject in subjects:
                        subject.sample(elapsed)
                time.sleep(5.0)
            stop.set()
            thread.join(30)
            published = [k for k in api.node(node)["metadata"].get("labels", {}) if k.startswith("nodeagent.io/")]
            if not published:
                raise SystemExit(f"no nodeagent.io/ label on Node {node}: the daemonset variants did not publish")
        finally:
            for subject in subjects:
                subject.stop()
            if created_mountpoint:
                with contextlib.suppress(OSError):
                    for path in (SERVICE_ACCOUNT, SERVICE_ACCOUNT.parent, SERVICE_ACCOUNT.parent.parent):
                        path.rmdir()
        api_requests = api.count()
    shutil.rmtree(workdir, ignore_errors=True)  # after control-plane down, which reads its PIDs there

    rows = []
    for subject in subjects:
        rss = [s[1] for s in subject.samples]
        pss = [s[3] for s in subject.samples]
        window = subject.samples[-1][0] - subject.samples[0][0]
        cpu = (subject.samples[-1][2] - subject.samples[0][2]) / window * 100 if window > 0 else 0.0
        rows.append({
            "name": subject.name, "rss_median_mib": median(rss) / 2**20, "rss_max_mib": max(rss) / 2**20,
            "rss_first_mib": rss[0] / 2**20, "rss_last_mib": rss[-1] / 2**20, "pss_median_mib": median(pss) / 2**20,
            "cpu_percent": cpu,
            "scrape_ms_median": median(subject.scrape_seconds) * 1000, "scrape_bytes": subject.scrape_bytes,
        })
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "duration_s": args.duration,
        "warm_up_s": args.warm_up, "scrape_interval_s": args.scrape_interval, "api_requests": api_requests,
        "rows": rows, "samples": {s.name: s.samples for s in subjects},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(table(report))


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    exporter = shutil.which("prometheus-node-exporter") or "node_exporter"
    version = subprocess.run([exporter, "--version"], capture_output=True, text=True, check=False)
    first = (version.stdout or version.stderr).splitlines()[0] if (version.stdout or version.stderr) else "?"
    return {"cpu": cpu, "cpus": str(os.cpu_count()), "memory_gib": f"{psutil.virtual_memory().total / 2**30:.0f}",
            "kernel": platform.release(), "python": platform.python_version(), "node_exporter": first}


def table(report: dict) -> str:
    lines = ["| process | RSS median | RSS max | RSS first → last | PSS median | CPU | scrape (median) | exposition |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['name']} | {row['rss_median_mib']:.1f} MiB | {row['rss_max_mib']:.1f} MiB | "
                     f"{row['rss_first_mib']:.1f} → {row['rss_last_mib']:.1f} | {row['pss_median_mib']:.1f} MiB | "
                     f"{row['cpu_percent']:.2f} % | "
                     f"{row['scrape_ms_median']:.1f} ms | {row['scrape_bytes'] / 1024:.0f} kB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
