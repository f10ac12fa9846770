"""Logging without importing :mod:`logging` until something logs.

``import logging`` costs a one-shot command ~7 ms of start-up (it brings ``traceback``,
``linecache``, ``tokenize``, ``string``: bench/inspect), and ``nodeagent inspect`` on a healthy
host logs nothing. The modules on its path therefore take their logger from :func:`get_logger`, a
stand-in that imports :mod:`logging` at its first use, and the CLI configures logging with
:func:`configure_when_imported`: ``logging.basicConfig`` at once when :mod:`logging` is already
imported, otherwise at the moment anything (nodeagent or a library: pyroute2, the kubernetes
client) imports it, before the importer's next statement. Either way every record is handled
exactly as if ``basicConfig`` had run when the CLI started: same level, same stream object, same
format, and a later configuration (``serve``'s JSON handler) replaces it as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import logging


class _LazyLogger:
    """``logging.getLogger(name)``, fetched at the first attribute asked of it."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger(self.name)
        return getattr(logger, attr)


def get_logger(name: str) -> logging.Logger:
    """A logger that imports :mod:`logging` when it is first used (``log.warning(...)``)."""
    return _LazyLogger(name)  # type: ignore[return-value]


def configure_when_imported(*, level: str, stream: TextIO, fmt: str) -> None:
    """``logging.basicConfig(level=level, stream=stream, format=fmt)``, now or when logging is imported."""

    def apply(module: ModuleType) -> None:
        module.basicConfig(level=level, stream=stream, format=fmt)

    module = sys.modules.get("logging")
    if module is not None:
        apply(module)
    else:
        sys.meta_path.insert(0, _AfterImport("logging", apply))  # type: ignore[arg-type]


class _AfterImport:
    """A meta path finder that runs ``then(module)`` right after module ``name`` is executed.

    It finds nothing itself: it asks the finders after it for the module's spec and wraps the
    loader for that import, which puts the real loader back before executing the module, so the
    module ends up exactly as a plain import leaves it. It leaves ``sys.meta_path`` when the module
    is executed (a ``find_spec`` that only probes for the module leaves it in place).
    """

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.then = then

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        for finder in list(sys.meta_path):
            if finder is self or isinstance(finder, _AfterImport):
                continue  # another configuration waiting for the same import wraps its own spec
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _ThenLoader(spec.loader, self._executed)
        return spec

    def _executed(self, module: ModuleType) -> None:
        """The module ran: every configuration waiting for it applies, the first installed first."""
        waiting = [finder for finder in sys.meta_path if isinstance(finder, _AfterImport) and finder.name == self.name]
        for finder in reversed(waiting):
            sys.meta_path.remove(finder)
            finder.then(module)


class _ThenLoader:
    """The real loader, and ``then(module)`` once it has executed the module."""

    def __init__(self, loader: Any, then: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.then = then

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.loader, attr)

    def create_module(self, spec: Any) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        self.loader.exec_module(module)
        self.then(module)
