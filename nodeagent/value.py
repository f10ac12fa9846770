"""Frozen value objects that are cheap to define.

``@dataclass(frozen=True)`` generates six methods per class, each compiled with ``exec`` when the
class is defined: on Python 3.11 about 0.9 ms a class. The Inventory and the Host seam define some
twenty of them, which alone would cost ``nodeagent inspect`` a quarter of its start-up budget
(bench/inspect). :func:`value` makes the same kind of class with only ``__init__`` generated; the
immutability, equality, hashing and repr come from :class:`Value`, defined once.

The result is still a dataclass (``dataclasses.fields``, ``replace`` and ``asdict`` work) and
behaves like a frozen one: assigning or deleting a field raises ``FrozenInstanceError``, equality
compares the class and the fields, and the hash is the fields' hash.

Even the one generated ``__init__`` is compiled only for a class a run builds many of (a
``compile`` is ~0.3 ms, and most value classes have one instance a run, or none: a host without GPUs
builds no ``Gpu``); until then the arguments are bound by one shared function. Both store the
fields straight into the instance's ``__dict__`` in field order, as ``Value.__setattr__`` would let
them, without that Python call per field (a 1024-CPU host's inventory sets ~12,000 fields).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError, dataclass, fields
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


class Value:
    """Immutability, equality, hash and repr for :func:`value` classes, shared by all of them."""

    __slots__ = ()

    def __setattr__(self, name: str, val: Any) -> None:
        # The generated __init__ sets each field once; anything after that is a mutation.
        if name in self.__dict__:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, val)

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((self.__class__, *self.__dict__.values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={val!r}" for name, val in self.__dict__.items())
        return f"{self.__class__.__qualname__}({fields})"


@dataclass_transform(frozen_default=True)
def value(cls: type[T]) -> type[T]:
    """Like ``@dataclass(frozen=True)`` for a subclass of :class:`Value`, at a third of the cost."""
    if not issubclass(cls, Value):
        raise TypeError(f"{cls.__qualname__} must derive from Value")
    return _with_init(cls)


@dataclass_transform()
def mutable(cls: type[T]) -> type[T]:
    """Like ``@dataclass(eq=False)``: a mutable record compared by identity, with dataclass's
    ``repr``, and its ``__init__`` made as a :func:`value` class's (not compiled at import)."""
    made = _with_init(cls)
    if "__repr__" not in cls.__dict__:
        made.__repr__ = _record_repr  # type: ignore[assignment]
    return made


def _record_repr(self: Any) -> str:
    shown = ", ".join(f"{spec.name}={getattr(self, spec.name)!r}" for spec in fields(self) if spec.repr)
    return f"{self.__class__.__qualname__}({shown})"


def _with_init(cls: type[T]) -> type[T]:
    if not cls.__doc__:
        # dataclass would write the signature there, through inspect.signature: ~0.3 ms a class.
        cls.__doc__ = f"{cls.__qualname__}: a value (its fields are its annotations)."
    made: Any = dataclass(init=False, repr=False, eq=False)(cls)
    for spec in fields(made):
        if spec.kw_only is True or spec.name in _RESERVED or spec.name.startswith(("_factory_", "_default_")):
            raise TypeError(f"{cls.__qualname__}.{spec.name}: a value class's fields are positional, "
                            f"and not named {', '.join(sorted(_RESERVED))}, _factory_* or _default_*")
    made.__init__ = _compiled_at_first_use(made)
    return made  # type: ignore[no-any-return]


_COMPILE_AFTER = 8
"""Instances of a class built by the binding ``__init__`` before its own is compiled."""


def _compiled_at_first_use(cls: type) -> Callable[..., None]:
    """A class's first ``__init__``: binds its arguments itself, and compiles the real one
    (:func:`_make_init`) at the class's ``_COMPILE_AFTER``-th instance or at the first call it
    cannot bind (wrong arguments: the compiled one raises Python's own ``TypeError``).

    Most value classes have one instance a run (the kernel, KVM, the inventory itself), so
    compiling costs more than it saves; the per-CPU, per-NIC ones are compiled early.
    """
    specs = fields(cls)
    names = tuple(spec.name for spec in specs if spec.init)  # the parameters
    known = frozenset(names)
    fill: dict[str, Callable[[], Any]] = {}  # field → what gives it when not passed
    for spec in specs:
        if spec.default_factory is not MISSING:
            fill[spec.name] = spec.default_factory
        elif spec.default is not MISSING:
            fill[spec.name] = _constant(spec.default)
    stored = tuple(spec.name for spec in specs if spec.init or spec.name in fill)  # in field order
    post_init = hasattr(cls, "__post_init__")
    built = [0]

    def first_init(self: Any, *args: Any, **kwargs: Any) -> None:
        built[0] += 1
        given = len(args)
        if (built[0] < _COMPILE_AFTER and given <= len(names) and known.issuperset(kwargs)
                and not any(name in kwargs for name in names[:given])
                and all(name in kwargs or name in fill for name in names[given:])):
            passed = dict(zip(names, args, strict=False))
            passed.update(kwargs)
            store = self.__dict__
            for name in stored:  # in field order, as the compiled one stores them
                store[name] = passed[name] if name in passed else fill[name]()
            if post_init:
                self.__post_init__()
            return
        init = _make_init(cls)
        cls.__init__ = init  # type: ignore[misc]
        init(self, *args, **kwargs)

    first_init.__name__ = "__init__"
    first_init.__qualname__ = f"{cls.__qualname__}.__init__"
    return first_init


def _constant(default: Any) -> Callable[[], Any]:
    return lambda: default


_RESERVED = frozenset(("self", "_s", "_FACTORY"))  # names the generated __init__ uses itself
_FACTORY = object()  # a parameter's default when its field has a default_factory (dataclass's own rule)


def _make_init(cls: type) -> Callable[..., None]:
    """``def __init__(self, a, b, c=…)`` storing each field into ``self.__dict__``, as dataclass's
    would set it (a field with ``init=False`` gets its default, or its factory's value)."""
    specs = fields(cls)
    scope: dict[str, Any] = {"_FACTORY": _FACTORY}
    params: list[str] = []
    defaults: list[Any] = []
    lines = ["  _s = self.__dict__"]
    for spec in specs:
        name = spec.name
        factory = spec.default_factory is not MISSING
        if factory:
            scope[f"_factory_{name}"] = spec.default_factory
        if not spec.init:
            if factory:
                lines.append(f"  _s[{name!r}] = _factory_{name}()")
            elif spec.default is not MISSING:
                scope[f"_default_{name}"] = spec.default
                lines.append(f"  _s[{name!r}] = _default_{name}")
            continue
        params.append(name)
        if factory:
            lines.append(f"  _s[{name!r}] = _factory_{name}() if {name} is _FACTORY else {name}")
            defaults.append(_FACTORY)
        else:
            lines.append(f"  _s[{name!r}] = {name}")
            if spec.default is not MISSING:
                defaults.append(spec.default)
    if hasattr(cls, "__post_init__"):
        lines.append("  self.__post_init__()")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines) + "\n", scope)
    init: Callable[..., None] = scope["__init__"]
    init.__defaults__ = tuple(defaults) or None  # type: ignore[attr-defined]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    return init
