"""The ``hugepages`` requirement: pages of a size configured, counted host-wide or per NUMA node.

Configured means allocated in the kernel's pool (``nr_hugepages``), whether VMs use them yet or not: the
node is sized for the class, the scheduler's hugepage resources account for what is in use. Each entry is
``{size, count | amount, perNumaNode}``; ``amount`` (``128Gi``) is turned into pages of ``size``.
``perNumaNode: any`` wants the whole amount on one NUMA node (a VM whose memory the topology manager keeps
on one node); ``every`` wants it on each node; without it the host's total counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodeagent.inventory import Inventory
from nodeagent.parse import (
    QUANTITY_FORM,
    SIZE_FORM,
    format_bytes_binary,
    page_size_name,
    parse_page_size_kb,
    parse_quantity_bytes,
)
from nodeagent.workloads.model import RequirementError, RequirementKind, shown

FORM = ("a list of {size: 2Mi|1Gi, count: <pages> or amount: <quantity such as 128Gi>, "
        "perNumaNode: any|every (optional)}")
PER_NUMA_NODE = ("any", "every")
MAX_ENTRIES = 16
MAX_PAGES = 1 << 40


@dataclass(frozen=True)
class PagesNeeded:
    size_kb: int
    pages: int
    amount_bytes: int | None = None  # as given with ``amount`` (None: given as a count)
    per_numa_node: str | None = None  # None (host total) | "any" | "every"

    @property
    def size(self) -> str:
        return page_size_name(self.size_kb)

    def words(self) -> str:
        unit = "hugepage" if self.pages == 1 else "hugepages"
        amount = f" ({format_bytes_binary(self.amount_bytes)})" if self.amount_bytes is not None else ""
        return f"{self.pages} {self.size} {unit}{amount}"


def parse_hugepages(value: Any) -> tuple[PagesNeeded, ...]:
    if not isinstance(value, list) or not value:
        raise RequirementError(f"{'an empty list' if value == [] else shown(value)} is not {FORM}")
    if len(value) > MAX_ENTRIES:
        raise RequirementError(f"{len(value)} entries; at most {MAX_ENTRIES} are accepted")
    entries: list[PagesNeeded] = []
    for i, item in enumerate(value):
        entry = _parse_entry(item, f"[{i}]")
        if any(e.size_kb == entry.size_kb and e.per_numa_node == entry.per_numa_node for e in entries):
            raise RequirementError(f"{entry.size} is already required above; give one entry per size "
                                   "(and perNumaNode)", f"[{i}]")
        entries.append(entry)
    return tuple(entries)


def _parse_entry(item: Any, path: str) -> PagesNeeded:
    if not isinstance(item, dict):
        raise RequirementError(f"{shown(item)} is not a mapping {{size, count | amount, perNumaNode}}", path)
    for key in item:
        if key not in ("size", "count", "amount", "perNumaNode"):
            raise RequirementError("unknown field (allowed here: size, count, amount, perNumaNode)", f"{path}.{key}")
    if "size" not in item:
        raise RequirementError("required field is missing", f"{path}.size")
    try:
        size_kb = parse_page_size_kb(item["size"]) if isinstance(item["size"], str) else None
    except ValueError:
        size_kb = None
    if size_kb is None:
        raise RequirementError(f"{shown(item['size'])} is not {SIZE_FORM}", f"{path}.size")
    if ("count" in item) == ("amount" in item):
        raise RequirementError("give either count (pages) or amount (a quantity such as 128Gi)", path)
    amount = None
    if "count" in item:
        pages = item["count"]
        if isinstance(pages, bool) or not isinstance(pages, int) or not 1 <= pages <= MAX_PAGES:
            raise RequirementError(f"{shown(pages)} is not a number of pages from 1 to {MAX_PAGES}", f"{path}.count")
    else:
        amount = parse_quantity_bytes(item["amount"])
        if not amount:
            raise RequirementError(f"{shown(item['amount'])} is not {QUANTITY_FORM} (above 0)", f"{path}.amount")
        page_bytes = size_kb * 1024
        pages = -(-amount // page_bytes)
        if pages > MAX_PAGES:
            raise RequirementError(f"{shown(item['amount'])} is more than {MAX_PAGES} pages", f"{path}.amount")
    per_node = item.get("perNumaNode")
    if per_node is not None and per_node not in PER_NUMA_NODE:
        raise RequirementError(f"{shown(per_node)} is not one of any, every (the amount on one NUMA node, "
                               "or on each)", f"{path}.perNumaNode")
    return PagesNeeded(size_kb, pages, amount, per_node)


def _node_totals(inv: Inventory, size: str) -> dict[int, int]:
    return {node.id: (node.hugepages[size].total or 0) if size in node.hugepages else 0 for node in inv.numa}


def _host_total(inv: Inventory, size: str) -> int:
    pool = inv.memory.hugepages.get(size)
    return (pool.total or 0) if pool is not None else 0


def hugepages_shortfalls(inv: Inventory, entries: tuple[PagesNeeded, ...]) -> list[str]:
    reasons = []
    for need in entries:
        nodes = _node_totals(inv, need.size)
        if need.per_numa_node is None or not nodes:
            have = _host_total(inv, need.size)
            if have < need.pages:
                reasons.append(f"needs {need.words()} configured, has {have}")
            continue
        listing = ", ".join(f"node {node}: {count}" for node, count in sorted(nodes.items()))
        if need.per_numa_node == "any" and max(nodes.values()) < need.pages:
            reasons.append(f"needs {need.words()} configured on one NUMA node, has at most "
                           f"{max(nodes.values())} ({listing})")
        elif need.per_numa_node == "every" and min(nodes.values()) < need.pages:
            reasons.append(f"needs {need.words()} configured on every NUMA node, has {listing}")
    return reasons


def describe_hugepages(entries: tuple[PagesNeeded, ...]) -> str:
    parts = []
    for need in entries:
        if need.amount_bytes is not None:
            text = f"≥ {format_bytes_binary(need.amount_bytes)} of {need.size} hugepages"
        elif need.pages == 1:
            text = f"{need.size} hugepages"
        else:
            text = f"≥ {need.pages} × {need.size} hugepages"
        where = {"any": " on one NUMA node", "every": " on every NUMA node"}.get(need.per_numa_node or "", "")
        parts.append(f"{text} configured{where}")
    return ", ".join(parts)


HUGEPAGES = RequirementKind("hugepages", FORM, parse_hugepages, hugepages_shortfalls, describe_hugepages)
