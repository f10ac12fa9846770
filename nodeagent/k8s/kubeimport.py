"""Import the few modules of the ``kubernetes`` client nodeagent uses, without its package ``__init__``s.

``import kubernetes`` (or any ``kubernetes.x``, since Python runs every parent package's
``__init__`` first) loads the generated model classes (~700 modules), the dynamic client with
``kubernetes_validate``/``jsonschema`` when installed, the websocket stream client, the informer,
and the kubeconfig loader's OAuth stack (``requests``, ``oauthlib``): about 23 MiB of a daemon
that sends six kinds of raw-JSON requests. nodeagent needs ``client.configuration``,
``client.api_client``, ``client.rest``, ``client.exceptions``, ``watch.watch`` and one of the two
config loaders (in-cluster: a token file; kubeconfig: only when one is given).

:func:`client_modules` registers the client's packages as lazy packages (:mod:`nodeagent.lazypkg`:
same ``__path__``, so their submodules import normally) before importing those submodules. A name a
package's ``__init__`` would have defined is still there: the first access to one runs the real
``__init__`` into the module (so code that expects the whole client, tests included, keeps
working; it then pays the full import). When the real package is already imported, nothing is
replaced. ``bench/serve/client_memory.py`` measures what each part costs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from nodeagent.lazypkg import lazy_package

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


def client_modules(*, kubeconfig_loader: bool = False) -> dict[str, ModuleType]:
    """The client modules nodeagent uses, imported without the package ``__init__``s.

    ``kubeconfig_loader``: also the kubeconfig loader (its OAuth/exec-plugin stack); the
    in-cluster loader alone is what a DaemonSet pod needs. Raises ImportError when the client is
    not installed.
    """
    if importlib.util.find_spec("kubernetes") is None:
        raise ImportError("No module named 'kubernetes'")
    for name in LAZY_PACKAGES:
        lazy_package(name, KNOWN_NAMES.get(name))
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
