"""Operator-written YAML documents (profiles, workload classes), read strictly.

A safe loader that refuses a mapping with the same key twice, and one error type whose message says
where the YAML is broken, so every document kind refuses bad YAML with the same words.
"""

from __future__ import annotations

import functools
from typing import Any


class YamlDocumentError(ValueError):
    """The text is not YAML nodeagent can read; ``message`` says where and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DocumentFieldError(ValueError):
    """An invalid document of a known kind. ``errors`` holds one ``field.path: message`` line per problem."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + e for e in self.errors))


def _shown(value: Any) -> str:
    return repr(value[:80]) if isinstance(value, str) else repr(value)


def load_documents(text: str) -> list[Any]:
    """The non-empty YAML documents of ``text``. Raises :class:`YamlDocumentError`."""
    import yaml

    try:
        return [d for d in yaml.load_all(text, Loader=unique_key_loader()) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlDocumentError(f"not valid YAML{where}: {problem}") from exc
    except RecursionError as exc:
        raise YamlDocumentError("nested too deeply") from exc
    except (ValueError, TypeError, AttributeError, ArithmeticError, LookupError) as exc:
        # PyYAML's constructors raise plain built-in errors for some malformed scalars
        # ("2001-13-45", "!!int 'x'", an empty "!!int", an integer of more than 4300 digits).
        raise YamlDocumentError(f"not valid YAML: a value cannot be read ({str(exc)[:120]})") from exc


@functools.cache
def unique_key_loader() -> type:
    """A safe YAML loader that refuses a mapping with the same key twice.

    YAML 1.2 says keys are unique, but PyYAML keeps the last one silently: ``count: 4`` followed
    later by ``count: 400`` would apply 400 with no word. Merge keys (``<<``) keep their meaning:
    an explicit key may override a merged one. Built lazily, as the yaml import is.
    """
    import yaml
    from yaml.constructor import ConstructorError

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class UniqueKeyLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:
                        continue  # an unhashable key: the base constructor reports it
                    if first is not key_node:
                        raise ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"duplicate key {_shown(key)} (first given at line {first.start_mark.line + 1})",
                            key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader
