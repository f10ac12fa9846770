"""QEMU processes of libvirt domains, seen through ``/proc``: which pid runs a domain, and where
its vCPU threads may run.

libvirt does not report a domain's pid through its API, and its pid files live in different
places for a system libvirtd (``/run/libvirt/qemu``) and for each KubeVirt virt-launcher pod. The
QEMU command line always carries ``-uuid <uuid>``, so the pid is found by scanning ``/proc`` once
for QEMU processes and indexing them by UUID; a cached pid is re-validated by its command line on
every use, so a recycled pid is never attributed to the wrong domain.

vCPU threads are named ``CPU <n>/KVM`` by QEMU (libvirt always starts QEMU with
``debug-threads=on``). Their ``Cpus_allowed_list`` is the affinity the scheduler actually applies:
vcpupin, ``<vcpu cpuset>`` and the cgroup cpuset of a KubeVirt pod all end up there.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from nodeagent.host import Host
from nodeagent.parse import parse_cpulist

_VCPU_THREAD = re.compile(r"^CPU (\d+)/KVM$")
_QEMU_COMM_PREFIX = "qemu"  # qemu-system-x86 (comm is cut at 15 characters), qemu-kvm


@dataclass(frozen=True)
class VcpuThread:
    vcpu: int
    tid: int
    allowed_cpus: list[int]


def qemu_uuid(cmdline: bytes) -> str | None:
    """The ``-uuid`` argument of a QEMU command line (NUL-separated argv), lower-cased."""
    argv = cmdline.split(b"\0")
    for index, arg in enumerate(argv[:-1]):
        if arg == b"-uuid":
            return argv[index + 1].decode(errors="replace").strip().lower() or None
    return None


class QemuProcessIndex:
    """Domain UUID → QEMU pid, by a rate-limited scan of ``/proc``."""

    def __init__(self, host: Host, *, rescan_interval_s: float = 30.0) -> None:
        self._host = host
        self._rescan_interval_s = rescan_interval_s
        self._by_uuid: dict[str, int] = {}
        self._last_scan = float("-inf")
        self._lock = threading.Lock()

    def pid(self, uuid: str) -> int | None:
        """The pid of the QEMU process running ``uuid``, or None when none is found."""
        uuid = uuid.lower()
        with self._lock:
            cached = self._by_uuid.get(uuid)
            if cached is not None and self._runs(cached, uuid):
                return cached
            now = time.monotonic()
            if now - self._last_scan >= self._rescan_interval_s:
                self._scan()
                self._last_scan = now
            found = self._by_uuid.get(uuid)
            return found if found is not None and self._runs(found, uuid) else None

    def forget(self, keep: set[str]) -> None:
        """Drop entries for domains that no longer exist."""
        with self._lock:
            for uuid in [u for u in self._by_uuid if u not in keep]:
                del self._by_uuid[uuid]

    def _runs(self, pid: int, uuid: str) -> bool:
        cmdline = self._host.read_bytes(f"/proc/{pid}/cmdline")
        return cmdline is not None and qemu_uuid(cmdline) == uuid

    def _scan(self) -> None:
        found: dict[str, int] = {}
        for entry in self._host.listdir("/proc"):
            if not entry.isdigit():
                continue
            comm = self._host.read_str(f"/proc/{entry}/comm")
            if not comm or not comm.startswith(_QEMU_COMM_PREFIX):
                continue
            cmdline = self._host.read_bytes(f"/proc/{entry}/cmdline")
            uuid = qemu_uuid(cmdline) if cmdline else None
            if uuid:
                found[uuid] = int(entry)
        self._by_uuid = found


def vcpu_threads(host: Host, pid: int) -> list[VcpuThread]:
    """The vCPU threads of a QEMU process with their allowed CPUs (empty when it is gone)."""
    threads: list[VcpuThread] = []
    for tid in host.listdir(f"/proc/{pid}/task"):
        comm = host.read_str(f"/proc/{pid}/task/{tid}/comm")
        match = _VCPU_THREAD.match(comm or "")
        if not match or not tid.isdigit():
            continue
        status = host.read_text(f"/proc/{pid}/task/{tid}/status") or ""
        allowed = _status_field(status, "Cpus_allowed_list")
        if allowed is None:
            continue
        try:
            cpus = parse_cpulist(allowed)
        except ValueError:
            host.warn(f"/proc/{pid}/task/{tid}/status", f"garbled Cpus_allowed_list {allowed!r}")
            continue
        threads.append(VcpuThread(vcpu=int(match.group(1)), tid=int(tid), allowed_cpus=cpus))
    return sorted(threads, key=lambda t: t.vcpu)


def _status_field(status: str, key: str) -> str | None:
    for line in status.splitlines():
        name, sep, value = line.partition(":")
        if sep and name == key:
            return value.strip()
    return None
