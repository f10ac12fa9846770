"""CPU: identity and flags from /proc/cpuinfo; topology, isolation and cpufreq from sysfs.

Sockets, cores and threads come from the ``topology/`` files, not from counting cpuinfo blocks
(which miss offline CPUs and lie under some hypervisors). Per-CPU files are read once per group
they describe: the thread siblings of a CPU answer for its whole core, and a cpufreq policy's
``affected_cpus`` for every CPU it governs, which keeps a 224-CPU host to ~2 reads a core.

Which file gives which fact on each architecture: see :mod:`nodeagent.discover.cpuid` and the
README's reference.
"""

from __future__ import annotations

from nodeagent.discover.cpuid import PER_BLOCK_ARCHITECTURES, architecture, first_values, identify, parse_cpuinfo
from nodeagent.host import Host
from nodeagent.inventory import CpufreqPolicy, CpuInfo
from nodeagent.parse import cmdline_params, isolcpus_cpus, parse_cpu_words, parse_cpulist

CPU_DIR = "/sys/devices/system/cpu"
CPUFREQ_DIR = f"{CPU_DIR}/cpufreq"


def _int_field(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key)
    return int(value) if value is not None and value.isdigit() else None


def _virtualization(flags: list[str]) -> str | None:
    """The CPU flag that says the hardware can host KVM guests: x86 vmx/svm, s390 sie."""
    return next((f for f in ("vmx", "svm", "sie") if f in flags), None)


CPUINFO = "/proc/cpuinfo"


def _x86_block_end(text: str) -> int:
    """Where the first block of an x86 cpuinfo ends (after its blank line); 0 when not there yet."""
    end = text.find("\n\n")
    return end + 1 if end >= 0 and architecture(first_values(text[:end])) == "x86_64" else 0


def read_cpuinfo(host: Host) -> str:
    """/proc/cpuinfo, or on x86 only its first processor's block.

    x86 prints the same lines for every CPU (show_cpuinfo()), and nodeagent takes each key's first
    value, so the first block says all it uses. The kernel builds cpuinfo a record at a time as it
    is read: stopping after the first spares generating and parsing the rest, 2 MiB on a 1024-CPU
    host. Other architectures put facts in a header or trailer (s390x, POWER) or differ per CPU
    (arm64 big.LITTLE), and are read whole.
    """
    # The question is asked of the first 64 KiB only (Host.read_text_until): decoding it is cheap.
    text = host.read_text_until(
        CPUINFO, lambda data: _x86_block_end(data.decode("utf-8", errors="replace")) > 0) or ""
    end = _x86_block_end(text)
    return text[:end] if end else text


def discover_cpu(host: Host, cmdline: str) -> CpuInfo:
    text = read_cpuinfo(host)
    info = first_values(text)
    blocks = parse_cpuinfo(text) if architecture(info) in PER_BLOCK_ARCHITECTURES else []
    identity = identify(blocks, info)
    # x86 says "flags"; arm64 "Features"; s390 "features".
    flags = sorted(set((info.get("flags") or info.get("Features") or info.get("features") or "").split()))
    online = host.read_cpulist(f"{CPU_DIR}/online") or []
    present = host.read_cpulist(f"{CPU_DIR}/present") or sorted(set(online) | set(_cpu_dirs(host)))
    packages, siblings = _topology(host, online)
    sockets = max(len(packages), 1)
    threads_per_core = max((len(group) for group in siblings), default=1)
    cores = len(siblings) or len(online)
    per_package = _cores_per_package(packages, siblings)
    policies = read_cpufreq_policies(host, online)
    governors = _governors(policies)
    params = cmdline_params(cmdline)
    isolcpus, isol_flags = _cmdline_isolcpus(host, params.get("isolcpus"))
    smt_active = host.read_int(f"{CPU_DIR}/smt/active")
    return CpuInfo(
        vendor=identity.vendor,
        model_name=identity.model_names[0] if identity.model_names else None,
        family=_int_field(info, "cpu family"),
        model=_int_field(info, "model"),
        stepping=_int_field(info, "stepping"),
        sockets=sockets,
        cores_per_socket=_cores_per_socket(sockets, cores, threads_per_core, len(online), per_package),
        threads_per_core=threads_per_core,
        logical_cpus=len(present) or len(online),
        online=online,
        flags=flags,
        virtualization=_virtualization(flags),
        smt_active=None if smt_active is None else smt_active == 1,
        isolated=host.read_cpulist(f"{CPU_DIR}/isolated") or [],
        nohz_full=_nohz_full(host),
        cmdline_isolcpus=isolcpus,
        isolcpus_flags=isol_flags,
        cmdline_nohz_full=_cmdline_list(host, "nohz_full", params.get("nohz_full")),
        cmdline_rcu_nocbs=_cmdline_list(host, "rcu_nocbs", params.get("rcu_nocbs")),
        cpufreq_driver=_cpufreq_driver(host, policies),
        governor=_summarise_governors(governors),
        governors=governors,
        thread_siblings=siblings,
        packages=packages,
        architecture=identity.architecture,
        present=present,
        cores=cores if siblings else None,
        cores_per_package=per_package,
        model_names=identity.model_names,
        cpufreq_policies=policies,
    )


def _cpu_dirs(host: Host) -> list[int]:
    return [int(e[3:]) for e in host.listdir(CPU_DIR) if e.startswith("cpu") and e[3:].isdigit()]


def _cores_per_package(packages: dict[int, list[int]], siblings: list[list[int]]) -> dict[int, int]:
    """Package → the thread-sibling groups whose first CPU it holds (each CPU looked up once)."""
    holders: dict[int, list[int]] = {}
    for pkg, cpus in packages.items():
        for cpu in set(cpus):
            holders.setdefault(cpu, []).append(pkg)
    counts = dict.fromkeys(packages, 0)
    for group in siblings:
        for pkg in holders.get(group[0], ()):
            counts[pkg] += 1
    return counts


def _cores_per_socket(sockets: int, cores: int, threads: int, cpus: int, per_package: dict[int, int]) -> int | None:
    """Cores per socket only when it is one number: every package alike and the product exact.

    arm64 clusters (``physical_package_id`` 0,0,0,1,1,1,1,2), hybrid x86 and hosts with some SMT
    siblings offline have no single figure; :attr:`CpuInfo.cores_per_package` has the counts.
    """
    if len(set(per_package.values())) > 1 or cores % sockets:
        return None
    per_socket = cores // sockets
    return per_socket if sockets * per_socket * threads == cpus else None


def _topology(host: Host, online: list[int]) -> tuple[dict[int, list[int]], list[list[int]]]:
    """Socket → CPUs and the thread-sibling groups, reading each physical core once.

    A package's ``physical_package_id`` and ``package_cpus_list`` (``core_siblings_list`` before
    5.x) are read once, at its first core: the list names the package of every other core in it,
    so a 1024-CPU host reads 16 package files instead of one per core.

    POWER LPARs print ``physical_package_id`` -1 (no socket exposed): their packages are then the
    distinct ``core_siblings_list`` groups, numbered in CPU order, as lscpu counts them.
    """
    packages: dict[int, list[int]] = {}
    groups: list[list[int]] = []
    seen: set[int] = set()
    online_set = set(online)
    anonymous: dict[tuple[int, ...], int] = {}
    package_of: dict[int, int] = {}  # CPU → package, from the package_cpus_list of a package already read
    for cpu in online:
        if cpu in seen:
            continue
        base = f"{CPU_DIR}/cpu{cpu}/topology"
        group = host.read_cpulist(f"{base}/core_cpus_list")
        if group is None:
            group = host.read_cpulist(f"{base}/thread_siblings_list") or [cpu]
        group = [c for c in group if c in online_set] or [cpu]
        package = package_of.get(cpu)
        if package is None:
            package = host.read_int(f"{base}/physical_package_id")
            if package is None or package < 0:
                siblings = host.read_cpulist(f"{base}/core_siblings_list") if package is not None else None
                key = tuple(siblings) if siblings else ()
                package = anonymous.setdefault(key, len(anonymous))
            else:
                members = (host.read_cpulist(f"{base}/package_cpus_list")
                           or host.read_cpulist(f"{base}/core_siblings_list") or ())
                package_of.update(dict.fromkeys(members, package))
        groups.append(group)
        seen.update(group)
        packages.setdefault(package, []).extend(group)
    return {pkg: sorted(cpus) for pkg, cpus in sorted(packages.items())}, groups


def read_cpufreq_policies(host: Host, online: list[int]) -> list[CpufreqPolicy]:
    """Every cpufreq policy with its online CPUs, governor and offered governors.

    Kernels since 4.3 have ``cpu/cpufreq/policyN``; older ones (and some vendor kernels) only the
    per-CPU ``cpuN/cpufreq/`` directories, where the first CPU's ``affected_cpus`` answers for the
    others. ``affected_cpus`` is space-separated ("0 1 2 3"), not a cpulist. The offered governors
    are the driver's and the same on every policy, so they are read once.

    ``policyN`` is named after the CPU it was created for, which belongs to it, and each CPU belongs
    to one policy (cpufreq_online()). So when every online CPU has a ``policyN`` of its own (one
    policy per CPU: intel_pstate, amd-pstate, most of x86), no online CPU can be another policy's,
    and each such policy's ``affected_cpus`` is its own CPU alone: it is not read (1024 reads on a
    1024-CPU host). Policies of an offline CPU, and every policy of a driver that groups CPUs (arm64
    clusters: ``policy0`` for CPUs 0-3), are read.
    """
    names = [e for e in host.listdir(CPUFREQ_DIR) if e.startswith("policy") and e[6:].isdigit()]
    names.sort(key=lambda e: int(e[6:]))
    dirs = [(name, f"{CPUFREQ_DIR}/{name}") for name in names]
    covered: set[int] = set()
    if not dirs:
        dirs = [(f"cpu{cpu}", f"{CPU_DIR}/cpu{cpu}/cpufreq") for cpu in online]
    available: list[str] | None = None
    policies: list[CpufreqPolicy] = []
    online_set = set(online)
    owners_alone = bool(names) and online_set <= {int(name[6:]) for name in names}
    for name, path in dirs:
        if name.startswith("cpu") and int(name[3:]) in covered:
            continue
        if owners_alone and int(name[6:]) in online_set:
            cpus: list[int] | None = [int(name[6:])]
        else:
            cpus = _policy_cpus(host, path)
        if cpus is None:
            continue
        covered.update(cpus)
        if available is None:
            available = (host.read_str(f"{path}/scaling_available_governors") or "").split()
        policies.append(CpufreqPolicy(name, path, cpus, host.read_str(f"{path}/scaling_governor"), available))
    return policies


def _policy_cpus(host: Host, path: str) -> list[int] | None:
    for attribute in ("affected_cpus", "related_cpus"):
        text = host.read_text(f"{path}/{attribute}")
        if text is None:
            continue
        try:
            return parse_cpu_words(text)
        except ValueError as exc:
            host.warn(f"{path}/{attribute}", f"{exc}; this policy's CPUs are unknown")
            return None
    return None


def _cpufreq_driver(host: Host, policies: list[CpufreqPolicy]) -> str | None:
    return host.read_str(f"{policies[0].path}/scaling_driver") if policies else None


def _governors(policies: list[CpufreqPolicy]) -> dict[str, list[int]]:
    """Governor → CPUs over every policy. Empty without cpufreq."""
    governors: dict[str, list[int]] = {}
    for policy in policies:
        if policy.governor is not None:
            governors.setdefault(policy.governor, []).extend(policy.cpus)
    return {g: sorted(set(c)) for g, c in sorted(governors.items())}


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
