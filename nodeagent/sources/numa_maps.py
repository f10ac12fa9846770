"""Where a process's memory lives, per NUMA node, from ``/proc/<pid>/numa_maps``.

Each line of numa_maps is one mapping: ``<addr> <policy> [file=PATH] [anon=N] [huge] ...
N0=<pages> N1=<pages> ... kernelpagesize_kB=<k>``. The ``N<node>=`` counts are pages of that
mapping's page size resident on the node.

Only mappings that can hold guest RAM are counted: anonymous mappings (QEMU's default RAM
backend, plus its heap and stacks), hugetlbfs mappings (``huge``; KubeVirt's hugepages backend)
and memfd mappings (``file=/memfd:...``; the memfd backend). File mappings of the QEMU binary and
its libraries live in the shared page cache wherever the first reader put them and say nothing
about the guest, so they are left out.

Reading numa_maps makes the kernel walk the process's page tables, which costs time in proportion
to its resident memory; callers refresh it on an interval rather than on every scrape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.host import Host


@dataclass(frozen=True)
class NumaMemory:
    """Resident guest-RAM-like memory of one process, by NUMA node."""

    node_bytes: dict[int, int] = field(default_factory=dict)
    hugepage_bytes: int = 0  # of which in hugetlbfs pages

    @property
    def total_bytes(self) -> int:
        return sum(self.node_bytes.values())


def _counts_as_guest_memory(tokens: list[str]) -> bool:
    file_token = next((t for t in tokens if t.startswith("file=")), None)
    if file_token is None or "huge" in tokens:
        return True
    path = file_token[len("file="):]
    return path.startswith("/memfd:") or "/hugepages" in path


def parse_numa_maps(text: str) -> NumaMemory:
    """Sum the resident pages of guest-RAM-like mappings per node, in bytes."""
    per_node: dict[int, int] = {}
    huge = 0
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 3 or not _counts_as_guest_memory(tokens[2:]):
            continue
        page_kb = 4
        pages: dict[int, int] = {}
        for token in tokens[2:]:
            key, sep, value = token.partition("=")
            if not sep:
                continue
            if key == "kernelpagesize_kB" and value.isdigit():
                page_kb = int(value)
            elif key[:1] == "N" and key[1:].isdigit() and value.isdigit():
                pages[int(key[1:])] = int(value)
        for node, count in pages.items():
            size = count * page_kb * 1024
            per_node[node] = per_node.get(node, 0) + size
            if "huge" in tokens:
                huge += size
    return NumaMemory(node_bytes=dict(sorted(per_node.items())), hugepage_bytes=huge)


def read_numa_maps(host: Host, pid: int) -> NumaMemory | None:
    """The process's memory by node, or None when the process is gone or numa_maps unreadable."""
    text = host.read_text(f"/proc/{pid}/numa_maps")
    if text is None:
        return None
    return parse_numa_maps(text)
