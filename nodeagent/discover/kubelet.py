"""The kubelet: its config file (CPU/topology/memory manager policies) and whether it runs."""

from __future__ import annotations

import os

from nodeagent.host import Host
from nodeagent.inventory import KubeletInfo
from nodeagent.parse import parse_cpulist

CONFIG_PATHS = ("/var/lib/kubelet/config.yaml", "/etc/kubernetes/kubelet/config.yaml", "/etc/kubernetes/kubelet.yaml")


def discover_kubelet(host: Host) -> KubeletInfo:
    running, started_at = _kubelet_process(host)
    for path in CONFIG_PATHS:
        text = host.read_text(path)
        if text is None:
            continue
        import yaml  # only hosts with a kubelet pay for the import

        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            host.warn(path, f"not valid YAML ({str(exc).splitlines()[0]}); kubelet policies unknown")
            config = {}
        if not isinstance(config, dict):
            host.warn(path, "expected a KubeletConfiguration mapping; kubelet policies unknown")
            config = {}
        return KubeletInfo(
            config_present=True,
            config_path=path,
            cpu_manager_policy=config.get("cpuManagerPolicy"),
            reserved_system_cpus=_reserved(host, path, config.get("reservedSystemCPUs")),
            topology_manager_policy=config.get("topologyManagerPolicy"),
            topology_manager_scope=config.get("topologyManagerScope"),
            memory_manager_policy=config.get("memoryManagerPolicy"),
            running=running,
            started_at=started_at,
        )
    return KubeletInfo(False, None, None, None, None, None, None, running, started_at)


def _reserved(host: Host, path: str, value: object) -> list[int] | None:
    if value is None:
        return None
    try:
        return parse_cpulist(str(value))
    except ValueError as exc:
        host.warn(path, f"reservedSystemCPUs: {exc}")
        return None


def _kubelet_process(host: Host) -> tuple[bool | None, float | None]:
    """Whether a kubelet process runs, and since when (epoch seconds), from the root's /proc."""
    pids = [p for p in host.listdir("/proc") if p.isdigit()]
    if not pids:
        return None, None  # no process table under this root (a fixture): unknown
    for pid in pids:
        if (host.read_str(f"/proc/{pid}/comm") or "") == "kubelet":
            return True, _start_time(host, pid)
    return False, None


def _start_time(host: Host, pid: str) -> float | None:
    stat = host.read_str(f"/proc/{pid}/stat")
    boot = next((line.split()[1] for line in (host.read_text("/proc/stat") or "").splitlines()
                 if line.startswith("btime ")), None)
    if not stat or boot is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        ticks = int(fields[19])  # field 22 of stat; fields here start at field 3
    except (IndexError, ValueError):
        return None
    return int(boot) + ticks / os.sysconf("SC_CLK_TCK")
