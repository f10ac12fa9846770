"""nodeagent.jsontext writes exactly what ``json.dumps(data, indent=2)`` writes, and the fast
``to_plain`` gives what the plain recursive one gave (the inventory of every fixture host)."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest

from nodeagent.discover import discover
from nodeagent.host import Host
from nodeagent.inventory import to_plain
from nodeagent.jsontext import dumps_indented

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
HOSTS = [*sorted(p.stem for p in SPECS.glob("*.yaml") if p.stem != "catalog"), "debian12-dev-vm"]


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(enum.StrEnum):
    A = "a"


@dataclasses.dataclass
class Pair:
    left: object
    right: object


SAMPLES = [
    None, True, False, 0, -1, 2**70, 1.5, -0.0, 1e300, "", "plain", "quote \" backslash \\ tab \t",
    "ünïcödé ☃ \U0001f600", "\x00\x1f\x7f", [], {}, [[]], [{}], {"a": []}, {"a": {}},
    [1, 2, 3], ["a", "b"], [1, "a", None, True, 2.5], [True, False], [[1, 2], [3]],
    {"k": 1, "l": [1, 2], "m": {"n": ["x", {"o": None}]}, "": "empty key"},
    {"a": {"a": {"a": {"a": [1, {"a": "deep"}]}}}},
    [{"name": "policy0", "cpus": [0], "available": ["performance", "powersave"]}] * 3,
]


@pytest.mark.parametrize("data", SAMPLES, ids=range(len(SAMPLES)))
def test_same_text_as_json(data: object) -> None:
    assert dumps_indented(data) == json.dumps(data, indent=2)


@pytest.mark.parametrize("data", [
    {1: "int key"}, {None: 1, True: 2, 1.5: 3}, [Colour.RED.value, Level.HIGH], {"x": Level.HIGH},
    [Name.A], {"x": Name.A}, OrderedDict(a=1), [OrderedDict(a=1)], (1, 2), {"t": (1, [2])},
    [math.nan, math.inf, -math.inf],
], ids=range(11))
def test_what_it_does_not_handle_is_left_to_json(data: object) -> None:
    assert dumps_indented(data) == json.dumps(data, indent=2)


def test_unserialisable_raises_as_json_does() -> None:
    with pytest.raises(TypeError):
        json.dumps({"x": object()}, indent=2)
    with pytest.raises(TypeError):
        dumps_indented({"x": object()})


def _reference_to_plain(value: object) -> object:
    """The recursive conversion to_plain replaced (kept here as the reference)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _reference_to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _reference_to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reference_to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def test_to_plain_matches_the_reference() -> None:
    data = Pair([Colour.RED, Level.HIGH, Name.A, (1, 2)], {1: Pair(None, [Pair(1, 2), 1.5]), "k": (Colour.RED,)})
    assert to_plain(Pair) is Pair  # a class is a value, not a dataclass instance
    assert to_plain(data) == _reference_to_plain(data)
    assert json.dumps(to_plain(data)) == json.dumps(_reference_to_plain(data))


@pytest.mark.parametrize("name", HOSTS)
def test_fixture_inventories(host_trees: Callable[[str], Path], name: str) -> None:
    inventory = discover(Host(str(host_trees(name))))
    plain = inventory.to_dict()
    assert plain == _reference_to_plain(inventory)
    assert dumps_indented(plain) == json.dumps(plain, indent=2)
