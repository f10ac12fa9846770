"""The table of workload classes: parsing class definitions, layering overrides, judging a host.

A table starts from the defaults (:mod:`nodeagent.workloads.defaults`); a WorkloadClasses file and then a
profile's ``spec.workloadClasses`` are laid over it with :meth:`WorkloadTable.overlay`. A class body is
``{description, extends, requires}``:

* a class already in the table keeps its requirements and takes the ones ``requires`` gives (a requirement
  given ``null`` is dropped);
* ``extends: <class>`` starts from that class's requirements instead (a class of the table, or one defined
  earlier in the same document);
* a new class without ``extends`` has exactly the requirements it gives;
* a class given ``null`` is removed (its ``ready-<class>`` label and metric series go with it).

Every problem is collected as ``path: message`` naming the field and the accepted form.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nodeagent.inventory import Inventory
from nodeagent.kubenames import label_name_error
from nodeagent.workloads.model import Readiness, Requirement, RequirementError, WorkloadClass
from nodeagent.workloads.registry import KINDS, REQUIREMENT_KINDS
from nodeagent.yamldoc import DocumentFieldError

MAX_CLASSES = 64
MAX_DESCRIPTION = 256
CLASS_FIELDS = ("description", "extends", "requires")
CLASS_NAME_FORM = ("a name that makes 'ready-<name>' a label name: at most 57 characters of [A-Za-z0-9_.-], "
                   "beginning and ending with a letter or digit (such as 'ai-training')")


class WorkloadClassesError(DocumentFieldError):
    """Invalid workload classes. ``errors`` holds one ``field.path: message`` line per problem."""


@dataclass(frozen=True)
class WorkloadTable:
    """The workload classes in force, in order (the defaults first, then added classes)."""

    classes: tuple[WorkloadClass, ...]

    def __iter__(self) -> Iterator[WorkloadClass]:
        return iter(self.classes)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.classes)

    def __getitem__(self, name: str) -> WorkloadClass:
        for cls in self.classes:
            if cls.name == name:
                return cls
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def readiness(self, inv: Inventory) -> dict[str, Readiness]:
        """Every class of the table judged on ``inv``, in table order."""
        return {cls.name: judge(inv, cls) for cls in self.classes}

    def overlay(self, data: Any, path: str, *, source: str) -> WorkloadTable:
        """This table with the classes of ``data`` (a mapping of class name → body or null) laid over it.

        Raises :class:`WorkloadClassesError` listing every problem, each as ``path.field: message``.
        """
        errors: list[str] = []
        table = _overlay(self, data, path, source, errors)
        if errors:
            raise WorkloadClassesError(errors)
        return table

    def to_spec(self) -> dict[str, Any]:
        """The table as a WorkloadClasses document's ``classes`` mapping."""
        return {cls.name: cls.to_spec() for cls in self.classes}


def judge(inv: Inventory, cls: WorkloadClass) -> Readiness:
    reasons: list[str] = []
    notes: list[str] = []
    blocked_by: list[str] = []
    for requirement in cls.requirements:
        kind = KINDS[requirement.kind]
        shortfalls = kind.shortfalls(inv, requirement.value)
        if shortfalls:
            reasons += shortfalls
            blocked_by.append(requirement.kind)
        notes += kind.notes(inv, requirement.value)
    return Readiness(cls.name, not reasons, reasons, notes, blocked_by)


def class_name_error(name: object) -> str | None:
    if not isinstance(name, str) or label_name_error(f"ready-{name}") is not None or not name:
        return f"{name!r} is not {CLASS_NAME_FORM}"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _overlay(table: WorkloadTable, data: Any, path: str, source: str, errors: list[str]) -> WorkloadTable:
    if not isinstance(data, dict):
        errors.append(f"{path}: expected a mapping of class name to {{{', '.join(CLASS_FIELDS)}}}, got {_kind(data)}")
        return table
    if len(data) > MAX_CLASSES:
        errors.append(f"{path}: {len(data)} classes; at most {MAX_CLASSES} are accepted")
        return table
    builder = _ClassBuilder({cls.name: cls for cls in table.classes}, source, errors)
    for name, body in data.items():
        if (error := class_name_error(name)) is not None:
            errors.append(f"{path}[{name!r}]: {error}")
            continue
        builder.add(name, body, f"{path}.{name}")
    return WorkloadTable(tuple(builder.classes.values()))


@dataclass
class _ClassBuilder:
    """Lays class bodies over ``classes`` one at a time, collecting ``path: message`` errors."""

    classes: dict[str, WorkloadClass]
    source: str
    errors: list[str]

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def add(self, name: str, body: Any, path: str) -> None:
        if body is None:
            if name not in self.classes:
                self.error(path, f"null removes a class, and there is no class {name!r} "
                                 f"(classes: {', '.join(self.classes)})")
            self.classes.pop(name, None)
            return
        if not isinstance(body, dict):
            self.error(path, f"expected a mapping with fields {', '.join(CLASS_FIELDS)} (or null to remove the "
                             f"class), got {_kind(body)}")
            return
        count = len(self.errors)
        for key in body:
            if key not in CLASS_FIELDS:
                self.error(f"{path}.{key}", f"unknown field (allowed here: {', '.join(CLASS_FIELDS)})")
        base = self.base(name, body, path)
        inherited = base.description if base is not None and "extends" not in body else ""
        description = self.description(body, path, inherited)
        requirements = self.requirements(body, path, base)
        if len(self.errors) > count or requirements is None or description is None:
            return
        if not requirements:
            self.error(f"{path}.requires", "a class needs at least one requirement (such as kvm: true)")
            return
        ordered = tuple(requirements[k.name] for k in REQUIREMENT_KINDS if k.name in requirements)
        self.classes[name] = WorkloadClass(name, ordered, description, self.source)

    def base(self, name: str, body: dict[str, Any], path: str) -> WorkloadClass | None:
        """The class whose requirements this body starts from: ``extends``, else the class it overrides."""
        if "extends" not in body:
            return self.classes.get(name)
        parent = body["extends"]
        if not isinstance(parent, str) or parent not in self.classes or parent == name:
            others = ", ".join(c for c in self.classes if c != name)
            self.error(f"{path}.extends", f"{parent!r} is not another class defined above (classes: {others})")
            return None
        return self.classes[parent]

    def description(self, body: dict[str, Any], path: str, inherited: str) -> str | None:
        if "description" not in body:
            return inherited
        text = body["description"]
        if not isinstance(text, str) or len(text) > MAX_DESCRIPTION:
            self.error(f"{path}.description", f"{_kind(text)} is not a string of at most {MAX_DESCRIPTION} characters")
            return None
        return text

    def requirements(self, body: dict[str, Any], path: str,
                     base: WorkloadClass | None) -> dict[str, Requirement] | None:
        requirements = {r.kind: r for r in base.requirements} if base is not None else {}
        requires = body.get("requires", {})
        if not isinstance(requires, dict):
            self.error(f"{path}.requires", f"expected a mapping of requirement kind to value "
                                           f"(kinds: {', '.join(KINDS)}), got {_kind(requires)}")
            return None
        for key, raw in requires.items():
            where = f"{path}.requires.{key}"
            kind = KINDS.get(key) if isinstance(key, str) else None
            if kind is None:
                self.error(where, f"unknown requirement (kinds: {', '.join(KINDS)})")
            elif raw is None:
                requirements.pop(key, None)
            else:
                try:
                    requirements[key] = Requirement(key, kind.parse(raw), raw)
                except RequirementError as exc:
                    self.error(f"{where}{exc.field}", exc.message)
        return requirements
