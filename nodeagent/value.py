"""Frozen value objects that are cheap to define.

``@dataclass(frozen=True)`` generates six methods per class, each compiled with ``exec`` when the
class is defined: on Python 3.11 about 0.9 ms a class. The Inventory and the Host seam define some
twenty of them, which alone would cost ``nodeagent inspect`` a quarter of its start-up budget
(bench/inspect). :func:`value` makes the same kind of class with only ``__init__`` generated; the
immutability, equality, hashing and repr come from :class:`Value`, defined once.

The result is still a dataclass (``dataclasses.fields``, ``replace`` and ``asdict`` work) and
behaves like a frozen one: assigning or deleting a field raises ``FrozenInstanceError``, equality
compares the class and the fields, and the hash is the fields' hash.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
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
    if not cls.__doc__:
        # dataclass would write the signature there, through inspect.signature: ~0.3 ms a class.
        cls.__doc__ = f"{cls.__qualname__}: a value (its fields are its annotations)."
    return dataclass(repr=False, eq=False)(cls)
