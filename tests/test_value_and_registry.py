"""Frozen value classes (nodeagent.value) and the lazy command registry (nodeagent.commands)."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import pytest

import nodeagent.commands
from nodeagent.commands.lazy import COMMAND_MODULES
from nodeagent.inventory import HugepagePool, PcieLink
from nodeagent.value import Value, value


def test_value_classes_behave_like_frozen_dataclasses() -> None:
    pool = HugepagePool("2Mi", 2048, 10, 5, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pool.total = 11  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del pool.free  # type: ignore[misc]
    assert pool == HugepagePool("2Mi", 2048, 10, 5, 0)
    assert pool != HugepagePool("2Mi", 2048, 10, 4, 0)
    assert pool != PcieLink(None, None, None, None)
    assert hash(pool) == hash(HugepagePool("2Mi", 2048, 10, 5, 0))
    assert {pool, HugepagePool("2Mi", 2048, 10, 5, 0)} == {pool}
    assert repr(pool) == "HugepagePool(size='2Mi', size_kb=2048, total=10, free=5, surplus=0, reserved=None)"
    changed = dataclasses.replace(pool, total=12)
    assert (changed.total, pool.total) == (12, 10)
    assert [f.name for f in dataclasses.fields(pool)][:3] == ["size", "size_kb", "total"]


def test_value_needs_the_base_class() -> None:
    with pytest.raises(TypeError, match="Value"):
        @value
        class Loose:
            x: int


def test_value_defaults_and_factories_still_work() -> None:
    @value
    class Point(Value):
        x: int
        tags: list[str] = dataclasses.field(default_factory=list)

    assert Point(1) == Point(1, [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        Point(1).x = 2  # type: ignore[misc]


def test_every_command_module_is_registered_and_every_name_resolves() -> None:
    defined = {}
    for info in pkgutil.iter_modules(nodeagent.commands.__path__):
        module = importlib.import_module(f"nodeagent.commands.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            defined[command.name] = info.name
    assert defined == COMMAND_MODULES


def _point_classes() -> tuple[type, type]:
    """The same fields as a value class and as a frozen dataclass (named alike, for their messages)."""

    @value
    class Point(Value):
        x: int
        y: int = 0
        tags: list[str] = dataclasses.field(default_factory=list)

    value_point = Point

    @dataclasses.dataclass(frozen=True)
    class Point:  # type: ignore[no-redef]
        x: int
        y: int = 0
        tags: list[str] = dataclasses.field(default_factory=list)

    return value_point, Point


CALLS: list[tuple[tuple[object, ...], dict[str, object]]] = [
    ((1,), {}), ((1, 2), {}), ((1, 2, ["a"]), {}), ((), {"x": 3}), ((4,), {"tags": ["b"]}),
    ((), {"tags": ["c"], "x": 5, "y": 6}), ((7,), {"y": 8}),
]
BAD_CALLS: list[tuple[tuple[object, ...], dict[str, object]]] = [
    ((), {}), ((1, 2, [], 4), {}), ((1,), {"x": 2}), ((1,), {"z": 2}), ((), {"y": 1}),
]


@pytest.mark.parametrize("rounds", [1, 3])
def test_value_init_binds_as_a_dataclass_init_before_and_after_it_is_compiled(rounds: int) -> None:
    # A value class binds its arguments itself for its first instances and compiles its own
    # __init__ after a few: every call gives the fields (in field order) a dataclass's __init__
    # gives, and a wrong call raises the TypeError a dataclass's raises, whichever init runs.
    value_point, data_point = _point_classes()
    for _ in range(rounds):
        for args, kwargs in CALLS:
            made, expected = value_point(*args, **kwargs), data_point(*args, **kwargs)
            assert list(made.__dict__.items()) == [(f.name, getattr(expected, f.name))
                                                   for f in dataclasses.fields(data_point)]
        for args, kwargs in BAD_CALLS:
            with pytest.raises(TypeError) as ours:
                value_point(*args, **kwargs)
            with pytest.raises(TypeError) as theirs:
                data_point(*args, **kwargs)
            assert str(ours.value) == str(theirs.value)
    first, second = value_point(1), value_point(1)
    assert first.tags == [] and first.tags is not second.tags  # a fresh list each time, as default_factory
    assert first == second and repr(first).endswith(".Point(x=1, y=0, tags=[])")


def test_value_init_runs_post_init_either_way() -> None:
    seen: list[int] = []

    @value
    class Checked(Value):
        n: int

        def __post_init__(self) -> None:
            seen.append(self.n)

    for n in range(12):
        Checked(n)
    assert seen == list(range(12))


def test_value_refuses_fields_its_init_cannot_take() -> None:
    with pytest.raises(TypeError, match="positional"):
        @value
        class KeywordOnly(Value):
            x: int = dataclasses.field(kw_only=True)
