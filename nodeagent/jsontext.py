"""``json.dumps(data, indent=2)``, byte for byte, at a fraction of the cost.

With an indent the standard library falls back to its pure-Python encoder, a generator that yields
every separator and value on its own. A 1024-CPU host's inventory is ~0.5 MB of JSON made mostly of
long lists of CPU numbers: that encoder alone was a sixth of ``inspect -o json`` (bench/inspect).
This one appends to one list and writes a list of scalars in one ``join``. It takes what
:func:`nodeagent.inventory.to_plain` produces (dicts with string keys, lists, strings, numbers,
booleans, None); anything else is handed to :mod:`json` whole, so the output never differs.

Strings are escaped by the very function :mod:`json` uses (``_json``'s C ``encode_basestring_ascii``,
``json.encoder``'s when the accelerator is missing), and floats as ``json.encoder``'s ``floatstr``
writes them; the :mod:`json` package itself (~2 ms of start-up) is imported only for the fallback.
"""

from __future__ import annotations

from typing import Any

try:
    from _json import encode_basestring_ascii
except ImportError:  # an interpreter without the accelerator: json.encoder's own fallback
    from json.encoder import encode_basestring_ascii

_INDENT = "  "
_SCALAR_TYPES = (str, int, bool, type(None))  # float is left to json (NaN, Infinity, its repr)


class _UnsupportedError(Exception):
    pass


def dumps_indented(data: Any) -> str:
    """``json.dumps(data, indent=2)`` (``ensure_ascii``, no key sorting), identical output."""
    out: list[str] = []
    try:
        _encode(data, out, "\n")
    except _UnsupportedError:
        import json

        return json.dumps(data, indent=2)
    return "".join(out)


def _scalar(value: Any) -> str:
    cls = value.__class__
    if cls is str:
        return encode_basestring_ascii(value)  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if cls is int:
        return int.__repr__(value)
    if cls is float:
        return _float(value)
    raise _UnsupportedError


def _float(value: float) -> str:
    """``json.dumps(value)`` of a float (json.encoder's floatstr, allow_nan: NaN, Infinity, the repr)."""
    if value != value:  # noqa: PLR0124 (NaN is the one float unequal to itself)
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)


_INFINITY = float("inf")


def _encode(value: Any, out: list[str], newline: str) -> None:
    """Append ``value`` at the nesting whose line break (with its indent) is ``newline``.

    A dict's strings, ints, None, booleans and lists of ints or of strings are written where the
    dict is (one append each), not through a call per value: a 1024-CPU host has ~1,600 dicts
    holding ~20,000 such values.
    """
    cls = value.__class__
    if cls is dict:
        if not value:
            out.append("{}")
            return
        inner = newline + _INDENT
        prefixes = _key_prefixes(inner)
        opening = "{"
        for key, item in value.items():
            prefix = prefixes.get(key)
            if prefix is None:
                if key.__class__ is not str:
                    raise _UnsupportedError
                prefix = prefixes[key] = "," + inner + encode_basestring_ascii(key) + ": "
            if opening:
                prefix = opening + prefix[1:]
                opening = ""
            kind = item.__class__
            if kind is str:
                out.append(prefix + encode_basestring_ascii(item))
            elif kind is int:
                out.append(prefix + int.__repr__(item))
            elif item is None:
                out.append(prefix + "null")
            elif kind is bool:
                out.append(prefix + ("true" if item else "false"))
            elif kind is list:
                text = _flat_list(item, inner)
                if text is None:
                    out.append(prefix)
                    _encode(item, out, inner)
                else:
                    out.append(prefix + text)
            elif kind is dict:
                out.append(prefix)
                _encode(item, out, inner)
            else:
                out.append(prefix + _scalar(item))
        out.append(newline + "}")
    elif cls is list:
        text = _flat_list(value, newline)
        if text is not None:
            out.append(text)
            return
        inner = newline + _INDENT
        separator = "[" + inner
        for item in value:
            out.append(separator)
            separator = "," + inner
            if item.__class__ is dict or item.__class__ is list:
                _encode(item, out, inner)
            else:
                out.append(_scalar(item))
        out.append(newline + "]")
    else:
        out.append(_scalar(value))


def _flat_list(value: list[Any], newline: str) -> str | None:
    """An empty list, or one of ints only or strings only, written whole; None for any other."""
    if not value:
        return "[]"
    inner = newline + _INDENT
    if all(v.__class__ is int for v in value):
        return "[" + inner + ("," + inner).join(map(int.__repr__, value)) + newline + "]"
    if all(v.__class__ is str for v in value):
        return "[" + inner + ("," + inner).join(map(encode_basestring_ascii, value)) + newline + "]"
    return None


_PREFIXES: dict[str, dict[str, str]] = {}


def _key_prefixes(inner: str) -> dict[str, str]:
    """Key → ``,<newline><indent>"key": `` for one nesting: an inventory repeats a few keys thousands of times."""
    prefixes = _PREFIXES.get(inner)
    if prefixes is None:
        prefixes = _PREFIXES[inner] = {}
    return prefixes
