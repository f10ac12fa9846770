"""Requirement kinds judged on the host's CPU, kernel and KVM facts.

``kvm``, ``iommu``, ``ksm``, ``cpuFlags``, ``realtimeKernel``, ``realtimeScheduling``, ``isolatedCpus``,
``governor``: each a parser, a shortfall evaluator and a description (see :mod:`nodeagent.workloads`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nodeagent.inventory import Inventory
from nodeagent.parse import format_cpulist
from nodeagent.workloads.model import RequirementError, RequirementKind

_FLAG = re.compile(r"^[a-z0-9_]{1,64}$")
_GOVERNOR = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_FLAGS = 64


def _cpus(cpus: Any) -> str:
    return format_cpulist(cpus) or "none"


def _shown(value: Any) -> str:
    return repr(value[:80]) if isinstance(value, str) else repr(value)


def parse_true(value: Any) -> bool:
    """``true``: the requirement holds (a requirement cannot be ``false``; remove it with ``null``)."""
    if value is not True:
        raise RequirementError(f"{_shown(value)} is not true (to drop the requirement, give null)")
    return True


# --- kvm, iommu ----------------------------------------------------------------------------


def kvm_shortfalls(inv: Inventory, value: bool) -> list[str]:
    return [] if inv.kvm.available else ["KVM is not available (/dev/kvm is missing)"]


def iommu_shortfalls(inv: Inventory, value: bool) -> list[str]:
    return [] if inv.iommu.enabled else ["IOMMU is not enabled"]


KVM = RequirementKind("kvm", "true", parse_true, kvm_shortfalls, lambda v: "KVM available")
IOMMU = RequirementKind("iommu", "true", parse_true, iommu_shortfalls, lambda v: "IOMMU on")


# --- ksm -------------------------------------------------------------------------------------

KSM_FORM = "'running' or 'stopped' (true and false are taken to mean the same)"


def parse_ksm(value: Any) -> bool:
    """True: KSM must be merging pages; False: it must be off. YAML reads a bare ``off`` as false."""
    if isinstance(value, bool):
        return value
    if value in ("running", "stopped"):
        return value == "running"
    raise RequirementError(f"{_shown(value)} is not {KSM_FORM}")


def ksm_shortfalls(inv: Inventory, running: bool) -> list[str]:
    if running and not inv.ksm.running:
        return ["KSM is not running"]
    if not running and inv.ksm.running:
        return ["KSM is running (it must be off: merged pages add copy-on-write latency and a side channel)"]
    return []


KSM = RequirementKind("ksm", KSM_FORM, parse_ksm, ksm_shortfalls,
                      lambda running: "KSM running" if running else "KSM off")


# --- cpuFlags --------------------------------------------------------------------------------

FLAGS_FORM = "a list of /proc/cpuinfo flags such as [avx512f, tsc_deadline_timer]"


def parse_flags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise RequirementError(f"{_shown(value) if not isinstance(value, list) else 'an empty list'} "
                               f"is not {FLAGS_FORM}")
    if len(value) > MAX_FLAGS:
        raise RequirementError(f"{len(value)} flags; at most {MAX_FLAGS} are accepted")
    for i, flag in enumerate(value):
        if not isinstance(flag, str) or not _FLAG.match(flag):
            raise RequirementError(f"{_shown(flag)} is not a /proc/cpuinfo flag (lower-case letters, digits, '_')",
                                   f"[{i}]")
    return tuple(dict.fromkeys(value))


def flags_shortfalls(inv: Inventory, flags: tuple[str, ...]) -> list[str]:
    return [f"CPU lacks {flag}" for flag in flags if not inv.cpu.has_flag(flag)]


CPU_FLAGS = RequirementKind("cpuFlags", FLAGS_FORM, parse_flags, flags_shortfalls,
                            lambda flags: "CPU flags " + ", ".join(flags))


# --- realtimeKernel, realtimeScheduling -------------------------------------------------------


def realtime_kernel_shortfalls(inv: Inventory, value: bool) -> list[str]:
    return [] if inv.kernel.realtime else ["kernel is not PREEMPT_RT"]


def realtime_scheduling_shortfalls(inv: Inventory, value: bool) -> list[str]:
    runtime = inv.kernel.sched_rt_runtime_us
    if runtime == -1:
        return []
    have = "not readable" if runtime is None else str(runtime)
    return [f"kernel.sched_rt_runtime_us is {have}: RT tasks are throttled (needs -1, "
            "profile spec.kernel.realtimeScheduling)"]


REALTIME_KERNEL = RequirementKind("realtimeKernel", "true", parse_true, realtime_kernel_shortfalls,
                                  lambda v: "PREEMPT_RT kernel")
REALTIME_SCHEDULING = RequirementKind("realtimeScheduling", "true", parse_true, realtime_scheduling_shortfalls,
                                      lambda v: "kernel.sched_rt_runtime_us = -1")


# --- isolatedCpus ----------------------------------------------------------------------------

ISOLATION_FORM = "a mapping {count: <CPUs, at least 1>, nohzFull: true|false, rcuNocbs: true|false}"


@dataclass(frozen=True)
class Isolation:
    count: int = 1
    nohz_full: bool = False  # every isolated CPU is also nohz_full
    rcu_nocbs: bool = False  # every isolated CPU is also rcu_nocbs


def parse_isolation(value: Any) -> Isolation:
    if not isinstance(value, dict):
        raise RequirementError(f"{_shown(value) if not isinstance(value, list) else 'a list'} is not {ISOLATION_FORM}")
    for key in value:
        if key not in ("count", "nohzFull", "rcuNocbs"):
            raise RequirementError("unknown field (allowed here: count, nohzFull, rcuNocbs)", f".{key}")
    count = value.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 65536:
        raise RequirementError(f"{_shown(count)} is not an integer from 1 to 65536", ".count")
    flags = {}
    for key in ("nohzFull", "rcuNocbs"):
        flag = value.get(key, False)
        if not isinstance(flag, bool):
            raise RequirementError(f"{_shown(flag)} is not a boolean (true or false)", f".{key}")
        flags[key] = flag
    return Isolation(count, flags["nohzFull"], flags["rcuNocbs"])


def isolation_shortfalls(inv: Inventory, need: Isolation) -> list[str]:
    cpu = inv.cpu
    isolated = set(cpu.isolated)
    if not isolated:
        return ["no isolated CPUs"]
    reasons = []
    if len(isolated) < need.count:
        reasons.append(f"needs {need.count} isolated CPUs, has {len(isolated)}")
    if need.nohz_full and not isolated <= set(cpu.nohz_full):
        reasons.append(f"isolated CPUs not covered by nohz_full: {_cpus(isolated - set(cpu.nohz_full))}")
    rcu_nocbs = set(cpu.cmdline_rcu_nocbs or [])
    if need.rcu_nocbs and not isolated <= rcu_nocbs:
        reasons.append(f"isolated CPUs not covered by rcu_nocbs: {_cpus(isolated - rcu_nocbs)}")
    return reasons


def describe_isolation(need: Isolation) -> str:
    covered = [name for name, on in (("nohz_full", need.nohz_full), ("rcu_nocbs", need.rcu_nocbs)) if on]
    text = "isolated CPUs" if need.count == 1 else f"≥ {need.count} isolated CPUs"
    return text + (f" that {' and '.join(covered)} also cover" if covered else "")


ISOLATED_CPUS = RequirementKind("isolatedCpus", ISOLATION_FORM, parse_isolation, isolation_shortfalls,
                                describe_isolation)


# --- governor --------------------------------------------------------------------------------

GOVERNOR_FORM = "a cpufreq governor name such as 'performance'"


def parse_governor(value: Any) -> str:
    if not isinstance(value, str) or not _GOVERNOR.match(value):
        raise RequirementError(f"{_shown(value)} is not {GOVERNOR_FORM}")
    return value


def governor_shortfalls(inv: Inventory, governor: str) -> list[str]:
    """The governor on the isolated CPUs (on every online CPU when none are isolated); hosts without cpufreq pass."""
    cpu = inv.cpu
    if not cpu.governors:
        return []
    wanted = set(cpu.isolated) or set(cpu.online)
    slow = wanted - set(cpu.governors.get(governor, []))
    if not slow:
        return []
    where = "isolated CPUs" if cpu.isolated else "CPUs"
    return [f"governor is not '{governor}' on {where} {_cpus(slow)}"]


GOVERNOR = RequirementKind("governor", GOVERNOR_FORM, parse_governor, governor_shortfalls,
                           lambda governor: f"governor `{governor}` on the isolated CPUs where cpufreq exists")
