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
