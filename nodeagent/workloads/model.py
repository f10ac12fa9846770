"""The value types of workload readiness: requirement kinds, requirements, classes, and the verdict."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nodeagent.inventory import Inventory, Plain


class RequirementError(ValueError):
    """A requirement's value is not in its kind's accepted form.

    ``field`` is the path below the requirement (``.passthrough``, ``[0].size``), empty for the value itself;
    the schema prefixes the requirement's own path (``classes.ai-training.requires.gpus``).
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def shown(value: Any) -> str:
    """A requirement's value as its messages quote it: a mapping or a list by its kind, a string cut
    to 80 characters, anything else as Python writes it."""
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value[:80]) if isinstance(value, str) else repr(value)


def require_mapping(value: Any, keys: Iterable[str], form: str) -> None:
    """Raise unless ``value`` is a non-empty mapping of these keys only: the error names the accepted
    ``form``, or the unknown field."""
    if not isinstance(value, dict) or not value:
        raise RequirementError(f"{'an empty mapping' if value == {} else shown(value)} is not {form}")
    allowed = tuple(keys)
    for key in value:
        if key not in allowed:
            raise RequirementError(f"unknown field (allowed here: {', '.join(allowed)})", f".{key}")


def _no_notes(inv: Inventory, value: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class RequirementKind:
    """One key under a class's ``requires``: how its value is read, judged and described.

    ``parse(raw)`` turns the value as written (YAML) into the kind's own value, raising
    :class:`RequirementError` (message naming the accepted form) when it cannot. ``shortfalls(inv, value)``
    says, one line each, what the host lacks — with numbers where the requirement has them ("needs 2
    passthrough-ready GPUs, has 1"); empty when it is met. ``notes(inv, value)`` says what could not be
    judged without blocking (the kubelet's managers on a host with no kubelet yet). ``describe(value)``
    words the requirement for the class table ("≥ 64 × 1Gi hugepages").
    """

    name: str
    form: str  # the accepted form, for messages and docs
    parse: Callable[[Any], Any]
    shortfalls: Callable[[Inventory, Any], list[str]]
    describe: Callable[[Any], str]
    notes: Callable[[Inventory, Any], list[str]] = _no_notes


@dataclass(frozen=True)
class Requirement:
    """A parsed requirement: its kind's name, its value, and the value as written (to show the table)."""

    kind: str
    value: Any
    raw: Any


@dataclass(frozen=True)
class WorkloadClass:
    """A workload class: a name (the ``ready-<name>`` label) and its requirements, in the registry's order."""

    name: str
    requirements: tuple[Requirement, ...]
    description: str = ""
    source: str = "default"  # "default", or the file / profile that defined or last changed it

    def requirement(self, kind: str) -> Requirement | None:
        return next((r for r in self.requirements if r.kind == kind), None)

    def to_spec(self) -> dict[str, Any]:
        """The class as a WorkloadClasses document writes it."""
        spec: dict[str, Any] = {}
        if self.description:
            spec["description"] = self.description
        spec["requires"] = {r.kind: r.raw for r in self.requirements}
        return spec


@dataclass(frozen=True)
class Readiness(Plain):
    """A workload class judged on one host.

    ``reasons``: why it is not ready (empty when ready), each naming the shortfall. ``notes``: what could
    not be judged and did not block (ready may still be true), e.g. the kubelet's managers on a host with
    no kubelet configuration yet. ``blocked_by``: the requirement kinds (keys under ``requires``) that are not
    met, what ``nodeagent_workload_requirement_met`` exports.
    """

    workload: str
    ready: bool
    reasons: list[str]
    notes: list[str] = field(default_factory=list)
    blocked_by: list[str] = field(default_factory=list)  # the requirement kinds not met ("kubelet", "gpus")
