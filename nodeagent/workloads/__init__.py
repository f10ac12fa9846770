"""Workload readiness: one table of workload classes, each a set of sized requirements on the host.

A workload class (``general``, ``database``, ``ai-training``… or one an operator adds) is ready on a host
when every requirement it names is met; each unmet one says what the class needs and what the host has
("needs 65536 2Mi hugepages configured (128Gi), has 0"). The ``ready-<class>`` labels, the
``nodeagent_workload_ready{workload}`` series and ``check --for <class>`` all come from :func:`readiness`.

* :mod:`~nodeagent.workloads.defaults` — the default classes (the reference VM recipes' host half);
* :mod:`~nodeagent.workloads.table` — class bodies, overrides laid over the defaults, judging a host;
* :mod:`~nodeagent.workloads.registry` — every requirement kind, in the order reasons are given;
* :mod:`~nodeagent.workloads.host`, :mod:`~.hugepages`, :mod:`~.gpus`, :mod:`~.kubelet` — the kinds.

Adding a requirement kind
-------------------------
1. Write, in the module of the facts it judges (or a new one), a parser ``parse(raw) -> value`` that raises
   :class:`RequirementError` (message = the accepted form; ``field`` = the sub-path, ``.key`` or ``[i]``)
   for anything it does not accept — never a default for a typo; an evaluator
   ``shortfalls(inventory, value) -> list[str]`` returning one line per unmet part, sized ("needs N …,
   has M"), empty when met; a ``describe(value) -> str`` for the class table; optionally
   ``notes(inventory, value)`` for what cannot be judged on this host and must not block.
2. Wrap them in a :class:`RequirementKind` named by its key under ``requires`` (camelCase) and add it to
   :data:`~nodeagent.workloads.registry.REQUIREMENT_KINDS`.
3. Use it in a default class in :mod:`~nodeagent.workloads.defaults` only if the reference recipe needs it.
A key of an existing mapping-valued kind (``gpus``) is added inside that kind instead; see
:mod:`nodeagent.workloads.gpus`.
"""

from __future__ import annotations

from nodeagent.inventory import Inventory
from nodeagent.workloads.defaults import DEFAULT_CLASSES, default_table
from nodeagent.workloads.document import load_workload_classes, parse_workload_classes_text
from nodeagent.workloads.model import Readiness, Requirement, RequirementError, RequirementKind, WorkloadClass
from nodeagent.workloads.table import WorkloadClassesError, WorkloadTable

__all__ = [
    "DEFAULT_CLASSES", "Readiness", "Requirement", "RequirementError", "RequirementKind", "WorkloadClass",
    "WorkloadClassesError", "WorkloadTable", "default_table", "load_workload_classes", "parse_workload_classes_text",
    "readiness", "table_for",
]


def readiness(inv: Inventory, table: WorkloadTable | None = None) -> dict[str, Readiness]:
    """Every class of ``table`` (the defaults when None), ready or not, with the reasons it is not."""
    return (default_table() if table is None else table).readiness(inv)


def table_for(base: WorkloadTable | None, profile: object | None) -> WorkloadTable:
    """The classes in force on a node: ``base`` (a WorkloadClasses file's table, else the defaults) with the
    node's profile's ``spec.workloadClasses`` laid over it. Raises :class:`WorkloadClassesError`."""
    table = default_table() if base is None else base
    classes = getattr(profile, "workload_classes", None)
    if not classes:
        return table
    name = getattr(profile, "name", "") or "-"
    try:
        return table.overlay(classes, "spec.workloadClasses", source=f"profile {name}")
    except WorkloadClassesError as exc:
        raise WorkloadClassesError(exc.errors, source=f"profile {name}") from exc
