"""Import the few modules of the ``kubernetes`` client nodeagent uses, without its package ``__init__``s.

``import kubernetes`` (or any ``kubernetes.x``, since Python runs every parent package's
``__init__`` first) loads the generated model classes (~700 modules), the dynamic client with
``kubernetes_validate``/``jsonschema`` when installed, the websocket stream client, the informer,
and the kubeconfig loader's OAuth stack (``requests``, ``oauthlib``): about 23 MiB of a daemon
that sends six kinds of raw-JSON requests. nodeagent needs ``client.configuration``,
``client.api_client``, ``client.rest``, ``client.exceptions``, ``watch.watch`` and one of the two
config loaders (in-cluster: a token file; kubeconfig: only when one is given).

:func:`client_modules` registers the client's packages as :class:`LazyPackage` modules (same
``__path__``, so their submodules import normally) before importing those submodules. A name a
package's ``__init__`` would have defined is still there: the first access to one runs the real
``__init__`` into the module (so code that expects the whole client, tests included, keeps
working; it then pays the full import). When the real package is already imported, nothing is
replaced. ``bench/serve/client_memory.py`` measures what each part costs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

# The packages whose __init__ is skipped; their submodules import as usual.
LAZY_PACKAGES = ("kubernetes", "kubernetes.client", "kubernetes.client.models", "kubernetes.config",
                 "kubernetes.utils", "kubernetes.watch")

# Names the client's own modules import from a lazy package, and the submodule defining each:
# resolving these does not need the package __init__.
KNOWN_NAMES = {
    "kubernetes.client": {"Configuration": "configuration", "ApiClient": "api_client", "ApiException": "exceptions",
                          "rest": "rest"},
    "kubernetes.config": {"ConfigException": "config_exception", "load_incluster_config": "incluster_config",
                          "load_kube_config": "kube_config", "KUBE_CONFIG_DEFAULT_LOCATION": "kube_config"},
}

_lock = threading.RLock()


class LazyPackage(ModuleType):
    """A package module whose ``__init__`` runs only when a name it defines is asked for."""

    _initialised = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        known = KNOWN_NAMES.get(self.__name__, {}).get(name)
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


def _register(name: str) -> None:
    if name in sys.modules:
        return  # already imported (lazily or for real): leave it as it is
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


def client_modules(*, kubeconfig_loader: bool = False) -> dict[str, ModuleType]:
    """The client modules nodeagent uses, imported without the package ``__init__``s.

    ``kubeconfig_loader``: also the kubeconfig loader (its OAuth/exec-plugin stack); the
    in-cluster loader alone is what a DaemonSet pod needs. Raises ImportError when the client is
    not installed.
    """
    with _lock:
        if importlib.util.find_spec("kubernetes") is None:
            raise ImportError("No module named 'kubernetes'")
        for name in LAZY_PACKAGES:
            _register(name)
    wanted = {"configuration": "kubernetes.client.configuration", "api_client": "kubernetes.client.api_client",
              "rest": "kubernetes.client.rest", "exceptions": "kubernetes.client.exceptions",
              "config_exception": "kubernetes.config.config_exception",
              "incluster_config": "kubernetes.config.incluster_config", "watch": "kubernetes.watch.watch"}
    if kubeconfig_loader:
        wanted["kube_config"] = "kubernetes.config.kube_config"
    modules = {key: importlib.import_module(module) for key, module in wanted.items()}
    # The packages themselves, for their public names (client.ApiClient, config.load_incluster_config):
    # what callers and tests address, whether the packages are lazy or were imported whole.
    modules["client"] = sys.modules["kubernetes.client"]
    modules["config"] = sys.modules["kubernetes.config"]
    return modules
