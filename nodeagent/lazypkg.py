"""Import a few submodules of a third-party package without running the package's ``__init__``.

Python runs every parent package's ``__init__`` before a submodule, and some libraries' ``__init__``
imports everything they have: ``import prometheus_client.metrics_core`` also loads its push
gateway client (``urllib.request``), its WSGI/ASGI servers and three default collectors;
``import kubernetes.client.rest`` loads ~700 generated model classes. A long-running daemon that
uses a handful of submodules pays for all of it in resident memory.

:func:`lazy_package` registers a package as a :class:`LazyPackage` module (same ``__path__``, so
its submodules import normally) instead of executing its ``__init__``. A name the ``__init__``
would have defined is still there: ``known`` maps the names callers are expected to use to the
submodule defining each (resolved without the ``__init__``); the first access to any other name
runs the real ``__init__`` into the module, so code that expects the whole package (tests, a
library that imports it) keeps working and then pays the full import. When the package is
already imported, nothing is replaced.

The names under ``known`` are imported on first access, not at registration: a lazily used
submodule (prometheus_client's exposition module, say) costs nothing until something uses it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

_lock = threading.RLock()
_known: dict[str, dict[str, str]] = {}  # package → {name: submodule defining it (relative)}


class LazyPackage(ModuleType):
    """A package module whose ``__init__`` runs only when a name it defines is asked for."""

    _initialised = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        known = _known.get(self.__name__, {}).get(name)
        if known is not None:
            module = importlib.import_module(f"{self.__name__}.{known}")
            return module if known == name else getattr(module, name)
        with _lock:
            if not self._initialised:
                object.__setattr__(self, "_initialised", True)
                spec = self.__spec__
                assert spec is not None and spec.loader is not None
                spec.loader.exec_module(self)  # the real __init__, into this module
        if name in self.__dict__:
            return self.__dict__[name]
        hook = self.__dict__.get("__getattr__")  # the package's own lazy names (PEP 562)
        if hook is not None:
            return hook(name)
        try:
            return importlib.import_module(f"{self.__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None


def lazy_package(name: str, known: Mapping[str, str] | None = None) -> bool:
    """Register package ``name`` (installed, not yet imported) as a :class:`LazyPackage`.

    ``known``: public names of the package → the submodule (relative to it) defining each.
    Returns False, changing nothing, when the package is already imported (lazily or for real);
    raises ImportError when it is not installed. A parent package must be registered first.
    """
    with _lock:
        if known:
            _known.setdefault(name, {}).update(known)
        if name in sys.modules:
            return False
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError(f"no package {name}")
        module = LazyPackage(name)
        module.__spec__ = spec
        module.__path__ = list(spec.submodule_search_locations)
        module.__file__ = spec.origin
        module.__package__ = name
        module.__loader__ = spec.loader
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
        return True
