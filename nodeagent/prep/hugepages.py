"""Hugepages: per NUMA node and size through ``nodeN/hugepages/hugepages-<kB>/nr_hugepages``.

Planning spreads a count without ``numaNode`` evenly over the nodes that offer the size, refuses a
request that would leave a node's host memory below the floor, and marks kubelet-restart when
kubelet runs (it reads hugepage capacity only at start).

Applying writes the count and reads it back: the kernel accepts any number and silently allocates
what it can. A short allocation is retried after compaction in a bounded loop (like NTO's 60 s
one). If it stays short it is reported; for gigantic pages (1Gi) the request moves to the boot
command line (the kernel reserves them before memory fragments), otherwise it fails the apply,
unless ``--allow-partial``.

Boot arguments: ``default_hugepagesz=`` when the profile asks for another default size, and the
per-node reservations of the sizes that live on the boot line (already in the persisted
arguments, or deferred there by this apply).
"""

from __future__ import annotations

from typing import Any

from nodeagent.host import Host
from nodeagent.inventory import Inventory, NumaNode
from nodeagent.owned import hugepage_sizes
from nodeagent.parse import kernel_page_size_arg, page_size_name, parse_page_size_kb
from nodeagent.prep.context import PlanContext
from nodeagent.prep.handlers import AllocationPolicy, Handler, RunState, UnreadableError, why_unreadable
from nodeagent.prep.lifecycle import BootArgs, BootArgsRequest, SubsystemSpec
from nodeagent.prep.model import Action, Change, Effect, Plan, Refusal, Subsystem
from nodeagent.profile import HugepagesSpec

__all__ = ["SPEC", "AllocationPolicy", "ShortAllocationError", "boot_args", "boot_hugepage_args",
           "desired_counts", "plan_hugepages", "set_pages", "supports_node_form"]

GIGANTIC_KB = 1024 * 1024
COMPACT_MEMORY = "/proc/sys/vm/compact_memory"
GiB = 1024**3
X86_DEFAULT_HUGEPAGE_KB = 2048


def pages_path(node: int, size_kb: int) -> str:
    return f"/sys/devices/system/node/node{node}/hugepages/hugepages-{size_kb}kB/nr_hugepages"


def desired_counts(spec: HugepagesSpec, inventory: Inventory) -> dict[tuple[int, int], int]:
    """(node, size_kb) → pages. A count without numaNode is spread evenly; the remainder goes to
    the lowest-numbered nodes, so the total is exactly what was asked."""
    counts: dict[tuple[int, int], int] = {}
    for request in spec.pages:
        if request.numa_node is not None:
            counts[(request.numa_node, request.size_kb)] = request.count
            continue
        nodes = [n for n in inventory.numa if _offers(n, request.size_kb) and (n.memory_total_bytes or 0) > 0]
        if not nodes:
            nodes = [n for n in inventory.numa if _offers(n, request.size_kb)]
        if not nodes:
            continue
        base, extra = divmod(request.count, len(nodes))
        for index, node in enumerate(sorted(nodes, key=lambda n: n.id)):
            counts[(node.id, request.size_kb)] = base + (1 if index < extra else 0)
    return counts


def _offers(node: NumaNode, size_kb: int) -> bool:
    return any(pool.size_kb == size_kb for pool in node.hugepages.values())


def _current(node: NumaNode, size_kb: int) -> int | None:
    """The pool's page count; None when the pool exists but its count could not be read."""
    pool = next((p for p in node.hugepages.values() if p.size_kb == size_kb), None)
    return pool.total if pool is not None else 0


#: What every NUMA node keeps for the host whatever the profile says (``reserveHostMemory`` can
#: lower its own floor to 0, not this one): the kernel's per-node structures, page tables and
#: kubelet/system daemons need it, and a node with no memory outside its hugepage pools makes
#: the kernel OOM-kill the host's own services before any VM starts.
HARD_FLOOR_BYTES = 1 * 1024**3


def floor_bytes(spec: HugepagesSpec, node_memory: int) -> int:
    """The host memory a node must keep: max(percent of the node, minimum, the hard floor)."""
    return max(int(node_memory * spec.floor_percent / 100), spec.floor_bytes, HARD_FLOOR_BYTES)


def plan_hugepages(ctx: PlanContext, plan: Plan) -> None:
    spec = ctx.profile.hugepages
    if spec is None or not spec.pages:
        return
    inventory = ctx.inventory
    wanted = desired_counts(spec, inventory)
    for request in spec.pages:
        if request.numa_node is None and not any(size == request.size_kb for _, size in wanted):
            plan.refusals.append(Refusal(Subsystem.HUGEPAGES, request.size,
                                         f"no NUMA node of this host offers {request.size} pages"))
    refused_nodes = _check_floor(spec, inventory, wanted, plan)
    kubelet = bool(inventory.kubelet.running)
    changes: list[Change] = []
    for (node_id, size_kb), count in sorted(wanted.items()):
        node = inventory.numa_node(node_id)
        if node is None or node_id in refused_nodes:
            continue
        current = _current(node, size_kb)
        size = page_size_name(size_kb)
        if current is None:
            plan.refusals.append(Refusal(
                Subsystem.HUGEPAGES, f"node{node_id} {size}",
                f"{pages_path(node_id, size_kb)}: the current count cannot be read (unreadable, or not a "
                "number); nodeagent never changes a value it cannot read back and restore"))
            continue
        if current == count:
            continue
        note = ""
        if count < current:
            pool = next((p for p in node.hugepages.values() if p.size_kb == size_kb), None)
            in_use = (pool.total or 0) - (pool.free or 0) if pool else 0
            if in_use > count:
                note = (f"{in_use} pages are in use; the kernel keeps them as surplus until released, "
                        "and kubelet's capacity drops below what is allocated")
        elif size_kb >= GIGANTIC_KB:
            needed = (count - current) * size_kb * 1024
            free = node.memory_free_bytes
            note = "if the kernel cannot find them at runtime, they move to the boot command line (reboot)"
            if free is not None and needed > free:
                note = (f"{_gib(needed)} needed, {_gib(free)} free on node{node_id}: the runtime allocation "
                        "will likely fall short and move to the boot command line (reboot)")
        changes.append(Change(
            subsystem=Subsystem.HUGEPAGES, target=f"node{node_id} {size}", current=current, desired=count,
            effect=Effect.KUBELET_RESTART if kubelet else Effect.NOW, reversible=True, action=Action.HUGEPAGES,
            path=pages_path(node_id, size_kb), note=note,
            detail={"node": node_id, "size_kb": size_kb, "gigantic": size_kb >= GIGANTIC_KB},
        ))
    # Shrinking first frees memory that growing may need.
    changes.sort(key=lambda c: (c.desired >= c.current, c.detail["node"], c.detail["size_kb"]))
    plan.changes.extend(changes)


def _check_floor(spec: HugepagesSpec, inventory: Inventory, wanted: dict[tuple[int, int], int],
                 plan: Plan) -> set[int]:
    refused: set[int] = set()
    for node in inventory.numa:
        total = node.memory_total_bytes
        if not total or not any(n == node.id for n, _ in wanted):
            continue
        pages_bytes = 0
        for pool in node.hugepages.values():
            count = wanted.get((node.id, pool.size_kb), pool.total or 0)
            pages_bytes += count * pool.size_kb * 1024
        left = total - pages_bytes
        floor = floor_bytes(spec, total)
        hard = "" if floor > HARD_FLOOR_BYTES else f", the hard floor of {_gib(HARD_FLOOR_BYTES)}"
        if left < floor:
            refused.add(node.id)
            plan.refusals.append(Refusal(
                Subsystem.HUGEPAGES, f"node{node.id}",
                f"{_gib(pages_bytes)} of hugepages would leave {_gib(max(left, 0))} of node{node.id}'s "
                f"{_gib(total)} to the host, below the floor of {_gib(floor)} "
                f"(max({spec.floor_percent:g}%, {_gib(spec.floor_bytes)}{hard})); lower the counts or set "
                "spec.hugepages.reserveHostMemory",
            ))
    return refused


def _gib(value: int) -> str:
    return f"{value / GiB:.1f} GiB"


# --- applying --------------------------------------------------------------------------------


class ShortAllocationError(Exception):
    """The kernel allocated fewer pages than asked, after every retry."""

    def __init__(self, change: Change, got: int, attempts: int, seconds: float) -> None:
        self.change = change
        self.got = got
        self.attempts = attempts
        self.seconds = seconds
        # Without the target: whoever reports it names the change first (no "node0 2Mi: node0 2Mi: …").
        super().__init__(f"the kernel allocated {got} of {change.desired} pages "
                         f"after {attempts} attempts in {seconds:.1f}s (with compaction)")


def set_pages(host: Host, change: Change, policy: AllocationPolicy) -> int:
    """Write the count, read it back, retry after compaction until the deadline. Returns the count.

    Raises :class:`ShortAllocationError` when growing falls short, ``OSError`` for what the kernel
    refuses, and RuntimeError when a shrink does not take (it always should).
    """
    path = change.path
    assert path is not None
    want = int(change.desired)
    host.write(path, str(want))
    if host.dry_run:
        return want
    got = _read_count(host, path)
    if got == want:
        return got
    if got > want:
        raise RuntimeError(f"asked for {want} pages, the kernel reports {got} ({path})")
    start = policy.clock()
    attempts = 1
    # At least one retry after compaction, then more until the deadline; the attempt cap keeps
    # a zero interval (or a stuck clock) from spinning.
    max_attempts = 2 + int(policy.timeout_s / max(policy.interval_s, 0.1))
    while got < want and attempts < max_attempts and (attempts < 2 or policy.clock() - start < policy.timeout_s):
        _compact(host, policy)
        if attempts > 1:
            policy.sleep(policy.interval_s)
        host.write(path, str(want))
        attempts += 1
        got = _read_count(host, path)
    if got < want:
        raise ShortAllocationError(change, got, attempts, policy.clock() - start)
    return got


def _read_count(host: Host, path: str) -> int:
    value = host.read_int(path)
    if value is None:
        raise RuntimeError(f"{path}: cannot read the page count back")
    return value


def _compact(host: Host, policy: AllocationPolicy) -> None:
    """Ask the kernel to defragment memory; best effort (absent without CONFIG_COMPACTION)."""
    if not host.exists(COMPACT_MEMORY):
        return
    try:
        host.write(COMPACT_MEMORY, "1")
    except OSError as exc:
        policy.log.append(f"compaction unavailable: {exc.strerror}")


def restore_pages(host: Host, path: str, old: int) -> None:
    current = host.read_int(path)
    if current == old:
        return
    host.write(path, str(old))
    if host.dry_run:
        return
    got = host.read_int(path)
    if got != old:
        raise RuntimeError(f"{path}: restored {old} pages but the kernel reports {got}")


def _pages_before(host: Host, change: Change) -> Any:
    assert change.path is not None
    value = host.read_int(change.path)
    if value is None:
        raise UnreadableError(change.path, why_unreadable(host, change.path, number=True) or "cannot read the count")
    return value


def _pages_apply(host: Host, change: Change, state: RunState) -> None:
    set_pages(host, change, state.allocation)


def _pages_restore(host: Host, path: str | None, target: str, old: Any, detail: dict[str, Any]) -> None:
    assert path is not None
    if old is not None:
        restore_pages(host, path, int(old))


PAGES = Handler(_pages_before, _pages_apply, _pages_restore)


# --- boot arguments --------------------------------------------------------------------------


def boot_args(ctx: PlanContext, request: BootArgsRequest) -> BootArgs:
    """``default_hugepagesz=`` (left out when the running default is already the wanted one) and
    the boot-time reservations of the sizes that live on the boot line."""
    spec, inventory = ctx.profile.hugepages, ctx.inventory
    contribution = BootArgs()
    if spec is None:
        return contribution
    if spec.default_size_kb is not None:
        arg = f"default_hugepagesz={kernel_page_size_arg(spec.default_size_kb)}"
        running = inventory.memory.default_hugepage_size
        running_kb = parse_page_size_kb(running) if running else X86_DEFAULT_HUGEPAGE_KB
        if running_kb != spec.default_size_kb or request.keeps(arg):
            contribution.args.append(arg)
    boot_sizes = (hugepage_sizes(list(request.existing)) | request.deferred_page_sizes) & {
        r.size_kb for r in spec.pages}
    if boot_sizes:
        counts: dict[int, dict[int, int]] = {}
        for (node, size_kb), count in desired_counts(spec, inventory).items():
            if size_kb in boot_sizes:
                counts.setdefault(size_kb, {})[node] = count
        page_args, note = boot_hugepage_args(counts, inventory.kernel.release)
        contribution.args += page_args
        if note:
            contribution.notes.append(note)
    return contribution


def boot_hugepage_args(counts: dict[int, dict[int, int]], kernel_release: str | None) -> tuple[list[str], str]:
    """``hugepagesz=1G hugepages=0:8,1:8`` per size; the per-node form needs Linux ≥ 5.16.

    ``counts``: size_kb → node → pages. Returns the arguments and a note about the form chosen.
    The node form came with "hugetlbfs: extend the definition of hugepages parameter to support
    node allocation" (merged for 5.16); older kernels take a total and spread it evenly.
    """
    per_node = supports_node_form(kernel_release)
    args: list[str] = []
    note = ""
    for size_kb in sorted(counts):
        nodes = {n: c for n, c in sorted(counts[size_kb].items()) if c > 0}
        if not nodes:
            continue
        args.append(f"hugepagesz={kernel_page_size_arg(size_kb)}")
        if per_node:
            args.append("hugepages=" + ",".join(f"{n}:{c}" for n, c in nodes.items()))
        else:
            args.append(f"hugepages={sum(nodes.values())}")
            note = (f"kernel {kernel_release} predates the per-node hugepages= form (5.16): the kernel "
                    "spreads the total evenly over the nodes")
    return args, note


def supports_node_form(release: str | None) -> bool:
    if not release:
        return False
    parts = release.split(".")
    try:
        major = int(parts[0])
        minor = int("".join(ch for ch in parts[1] if ch.isdigit()) or 0) if len(parts) > 1 else 0
    except ValueError:
        return False
    return (major, minor) >= (5, 16)


SPEC = SubsystemSpec(Subsystem.HUGEPAGES, plan=plan_hugepages, boot_args=boot_args,
                     handlers={Action.HUGEPAGES: PAGES})
