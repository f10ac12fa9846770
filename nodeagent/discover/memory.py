"""Host-wide memory: /proc/meminfo, hugepage pools per size, THP mode."""

from __future__ import annotations

import re

from nodeagent.host import Host
from nodeagent.inventory import HugepagePool, MemoryInfo
from nodeagent.parse import hugepages_dir_kb, page_size_name

_MEMINFO_LINE = re.compile(r"^(?:Node \d+ )?([\w()]+):\s+(\d+)(?:\s+kB)?\s*$")
_BRACKETED = re.compile(r"\[([^\]]+)\]")


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` or ``nodeN/meminfo`` → {field: value}; ``kB`` fields in bytes, counts as is."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = _MEMINFO_LINE.match(line.strip())
        if match:
            number = int(match.group(2))
            values[match.group(1)] = number * 1024 if line.rstrip().endswith("kB") else number
    return values


def read_meminfo(host: Host, path: str) -> dict[str, int]:
    text = host.read_text(path)
    if text is None:
        return {}
    values = parse_meminfo(text)
    if text.strip() and not values:
        host.warn(path, "no 'Field: value kB' lines found; memory reported as unknown")
    return values


def read_hugepage_pools(host: Host, directory: str, *, with_reserved: bool) -> dict[str, HugepagePool]:
    """Every ``hugepages-<N>kB`` pool under ``directory`` (host-wide or one NUMA node's)."""
    pools: dict[str, HugepagePool] = {}
    for entry in host.listdir(directory):
        kb = hugepages_dir_kb(entry)
        if kb is None:
            continue
        base = f"{directory}/{entry}"
        size = page_size_name(kb)
        pools[size] = HugepagePool(
            size=size,
            size_kb=kb,
            total=host.read_int(f"{base}/nr_hugepages"),
            free=host.read_int(f"{base}/free_hugepages"),
            surplus=host.read_int(f"{base}/surplus_hugepages"),
            reserved=host.read_int(f"{base}/resv_hugepages") if with_reserved else None,
        )
    return dict(sorted(pools.items(), key=lambda item: item[1].size_kb))


def bracketed_choice(text: str | None) -> str | None:
    """The selected word of a sysfs choice file: ``always [madvise] never`` → ``madvise``."""
    if text is None:
        return None
    match = _BRACKETED.search(text)
    return match.group(1) if match else (text.strip() or None)


def discover_memory(host: Host) -> MemoryInfo:
    meminfo = read_meminfo(host, "/proc/meminfo")
    default_kb = meminfo.get("Hugepagesize")
    return MemoryInfo(
        total_bytes=meminfo.get("MemTotal"),
        available_bytes=meminfo.get("MemAvailable"),
        swap_total_bytes=meminfo.get("SwapTotal"),
        swap_free_bytes=meminfo.get("SwapFree"),
        hugepages=read_hugepage_pools(host, "/sys/kernel/mm/hugepages", with_reserved=True),
        default_hugepage_size=page_size_name(default_kb // 1024) if default_kb else None,
        thp_enabled=bracketed_choice(host.read_text("/sys/kernel/mm/transparent_hugepage/enabled")),
        thp_defrag=bracketed_choice(host.read_text("/sys/kernel/mm/transparent_hugepage/defrag")),
    )
