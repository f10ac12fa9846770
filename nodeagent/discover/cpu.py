"""CPU: identity and flags from /proc/cpuinfo; topology, isolation and cpufreq from sysfs.

Sockets, cores and threads come from the ``topology/`` files, not from counting cpuinfo blocks
(which miss offline CPUs and lie under some hypervisors). Each physical core is read once: the
siblings of a CPU already seen are not read again, which keeps a 224-CPU host to ~2 reads a core.
"""

from __future__ import annotations

from nodeagent.host import Host
from nodeagent.inventory import CpuInfo
from nodeagent.parse import cmdline_params, isolcpus_cpus, parse_cpulist

CPU_DIR = "/sys/devices/system/cpu"


def parse_cpuinfo_first_block(text: str) -> dict[str, str]:
    """The ``key : value`` pairs of the first processor block (identity and flags are uniform)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _int_field(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key)
    return int(value) if value is not None and value.isdigit() else None


def discover_cpu(host: Host, cmdline: str) -> CpuInfo:
    info = parse_cpuinfo_first_block(host.read_text("/proc/cpuinfo") or "")
    # arm64 and others say "Features"; x86 says "flags".
    flags = sorted(set((info.get("flags") or info.get("Features") or "").split()))
    online = host.read_cpulist(f"{CPU_DIR}/online") or []
    packages, siblings = _topology(host, online)
    sockets = max(len(packages), 1)
    threads_per_core = max((len(group) for group in siblings), default=1)
    cores = len(siblings) or len(online)
    governors, driver = _cpufreq(host)
    params = cmdline_params(cmdline)
    isolcpus, isol_flags = _cmdline_isolcpus(host, params.get("isolcpus"))
    smt_active = host.read_int(f"{CPU_DIR}/smt/active")
    return CpuInfo(
        vendor=info.get("vendor_id") or info.get("CPU implementer"),
        model_name=info.get("model name"),
        family=_int_field(info, "cpu family"),
        model=_int_field(info, "model"),
        stepping=_int_field(info, "stepping"),
        sockets=sockets,
        cores_per_socket=max(cores // sockets, 1),
        threads_per_core=threads_per_core,
        logical_cpus=len(online),
        online=online,
        flags=flags,
        virtualization="vmx" if "vmx" in flags else "svm" if "svm" in flags else None,
        smt_active=None if smt_active is None else smt_active == 1,
        isolated=host.read_cpulist(f"{CPU_DIR}/isolated") or [],
        nohz_full=_nohz_full(host),
        cmdline_isolcpus=isolcpus,
        isolcpus_flags=isol_flags,
        cmdline_nohz_full=_cmdline_list(host, "nohz_full", params.get("nohz_full")),
        cmdline_rcu_nocbs=_cmdline_list(host, "rcu_nocbs", params.get("rcu_nocbs")),
        cpufreq_driver=driver,
        governor=_summarise_governors(governors),
        governors=governors,
        thread_siblings=siblings,
        packages=packages,
    )


def _topology(host: Host, online: list[int]) -> tuple[dict[int, list[int]], list[list[int]]]:
    """Socket → CPUs and the thread-sibling groups, reading each physical core once."""
    packages: dict[int, list[int]] = {}
    groups: list[list[int]] = []
    seen: set[int] = set()
    online_set = set(online)
    for cpu in online:
        if cpu in seen:
            continue
        base = f"{CPU_DIR}/cpu{cpu}/topology"
        group = host.read_cpulist(f"{base}/core_cpus_list")
        if group is None:
            group = host.read_cpulist(f"{base}/thread_siblings_list") or [cpu]
        group = [c for c in group if c in online_set] or [cpu]
        package = host.read_int(f"{base}/physical_package_id")
        groups.append(group)
        seen.update(group)
        packages.setdefault(package if package is not None and package >= 0 else 0, []).extend(group)
    return {pkg: sorted(cpus) for pkg, cpus in sorted(packages.items())}, groups


def _cpufreq(host: Host) -> tuple[dict[str, list[int]], str | None]:
    """Governor → CPUs over every cpufreq policy, and the scaling driver. Empty without cpufreq."""
    base = f"{CPU_DIR}/cpufreq"
    governors: dict[str, list[int]] = {}
    driver: str | None = None
    for policy in host.listdir(base):
        if not policy.startswith("policy"):
            continue
        governor = host.read_str(f"{base}/{policy}/scaling_governor")
        cpus = host.read_cpulist(f"{base}/{policy}/affected_cpus")
        if governor is None or cpus is None:
            continue
        governors.setdefault(governor, []).extend(cpus)
        if driver is None:
            driver = host.read_str(f"{base}/{policy}/scaling_driver")
    return {g: sorted(c) for g, c in sorted(governors.items())}, driver


def _summarise_governors(governors: dict[str, list[int]]) -> str | None:
    if not governors:
        return None
    return next(iter(governors)) if len(governors) == 1 else "mixed"


def _nohz_full(host: Host) -> list[int]:
    text = host.read_str(f"{CPU_DIR}/nohz_full")
    # Older kernels print "(null)" when nohz_full is not in use.
    if not text or text == "(null)":
        return []
    try:
        return parse_cpulist(text)
    except ValueError as exc:
        host.warn(f"{CPU_DIR}/nohz_full", f"{exc}; reported as unknown")
        return []


def _cmdline_list(host: Host, name: str, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return parse_cpulist(value)
    except ValueError as exc:
        host.warn("/proc/cmdline", f"{name}={value}: {exc}")
        return None


def _cmdline_isolcpus(host: Host, value: str | None) -> tuple[list[int] | None, list[str]]:
    if value is None:
        return None, []
    try:
        cpus, flags = isolcpus_cpus(value)
    except ValueError as exc:
        host.warn("/proc/cmdline", f"isolcpus={value}: {exc}")
        return None, []
    return cpus, flags
