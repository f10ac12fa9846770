"""The one place nodeagent talks to the Kubernetes API: connecting, and a small raw-JSON facade.

``kubernetes`` is imported inside the functions here, never at module import, so the CLI and the
daemon start (and the pure parts of this package work) on hosts without the client installed; and
only the client modules these calls use, without the package's models, dynamic client and (in a
pod) kubeconfig/OAuth stack (:mod:`nodeagent.k8s.kubeimport`).

The facade works on plain dicts (the JSON the API server sent) rather than the client's model
classes: the publisher compares and patches a handful of fields, and round-tripping a Node through
``V1Node`` would drop fields the generated models do not know. Every error comes out as
:class:`ApiError`, which says whether it is worth retrying and whether it is a conflict.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

NRT_GROUP = "topology.node.k8s.io"
NRT_VERSION = "v1alpha2"
NRT_PLURAL = "noderesourcetopologies"
NRT_PATH = f"/apis/{NRT_GROUP}/{NRT_VERSION}/{NRT_PLURAL}"
EVENTS_NAMESPACE = "default"  # where kubelet and controllers put Node events

MERGE_PATCH = "application/merge-patch+json"

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class K8sConfigError(Exception):
    """No usable cluster configuration (kubeconfig or in-cluster service account), or no node name."""


class ApiError(Exception):
    """A failed API call. ``status`` is the HTTP status, or None when no response came back."""

    def __init__(self, message: str, status: int | None = None, body: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}
        self.retry_after = retry_after  # seconds the server asked us to wait (429/503 Retry-After)

    @property
    def conflict(self) -> bool:
        """409: a stale resourceVersion (re-read and retry) or an object that already exists."""
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def retryable(self) -> bool:
        """Transient: no response at all (network, timeout) or a status the API server may not repeat."""
        return self.status is None or self.status in RETRYABLE_STATUSES

    @property
    def reason(self) -> str:
        return str(self.body.get("reason") or "")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    request: float = 15.0

    def pair(self, read: float | None = None) -> tuple[float, float]:
        return (self.connect, self.request if read is None else read)


# node-feature-discovery's per-node feature objects (namespaced; listed across namespaces by node label).
NODEFEATURE_PATH = "/apis/nfd.k8s-sigs.io/v1alpha1/nodefeatures"
NODEFEATURE_NODE_LABEL = "nfd.node.kubernetes.io/node-name"


def resolve_node_name(flag: str | None = None) -> str:
    """The node this agent speaks for: ``--node-name``, else ``NODE_NAME`` (downward API)."""
    name = flag or os.environ.get("NODE_NAME")
    if not name:
        raise K8sConfigError("no node name: set NODE_NAME (downward API fieldRef spec.nodeName) or pass --node-name")
    return name


def cluster_config_present(kubeconfig: str | None = None) -> bool:
    """Whether any cluster configuration exists to try: explicit, in-cluster, or a kubeconfig file."""
    if kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    paths = os.environ.get("KUBECONFIG", "").split(os.pathsep) if os.environ.get("KUBECONFIG") else []
    paths.append(os.path.expanduser("~/.kube/config"))
    return any(path and os.path.isfile(path) for path in paths)


def connect(kubeconfig: str | None = None, *, context: str | None = None,
            timeouts: Timeouts | None = None) -> KubeApi:
    """A :class:`KubeApi` for a kubeconfig file, the in-cluster service account, or the default kubeconfig.

    Order: an explicit ``kubeconfig``; the in-cluster config when running in a pod
    (``KUBERNETES_SERVICE_HOST`` is set); ``$KUBECONFIG`` / ``~/.kube/config``.
    """
    if not cluster_config_present(kubeconfig):
        # Checked before importing the client: a host without any cluster config pays nothing.
        raise K8sConfigError("no cluster configuration: no --kubeconfig, not in a pod, "
                             "no $KUBECONFIG or ~/.kube/config")
    in_cluster = not kubeconfig and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    try:
        import yaml

        from nodeagent.k8s.kubeimport import client_modules

        modules = client_modules(kubeconfig_loader=not in_cluster)
    except ImportError as exc:  # pragma: no cover - the package is a declared extra
        raise K8sConfigError("the 'kubernetes' package is not installed (pip install 'nodeagent[k8s]')") from exc

    config = modules["config"]
    ConfigException = modules["config_exception"].ConfigException  # noqa: N806 - the client's class
    configuration = modules["client"].Configuration()
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    except (ConfigException, OSError, TypeError, ValueError, KeyError, yaml.YAMLError) as exc:
        where = kubeconfig or ("in-cluster service account" if os.environ.get("KUBERNETES_SERVICE_HOST")
                               else os.environ.get("KUBECONFIG", "~/.kube/config"))
        raise K8sConfigError(f"cannot load the cluster configuration from {where}: {exc}") from exc
    return KubeApi.from_configuration(configuration, timeouts=timeouts)


def _client() -> dict[str, Any]:
    from nodeagent.k8s.kubeimport import client_modules

    return client_modules()


class KubeApi:
    """Raw-JSON Node, NodeResourceTopology and Event calls over one ``kubernetes`` ApiClient.

    The six requests go through the client's own ``param_serialize``/``call_api`` (its config
    loaders, auth, TLS and connection pool) rather than the generated ``CoreV1Api`` and
    ``CustomObjectsApi`` classes: those two load the generated code of every API endpoint, some
    22 MiB of a long-lived daemon's memory, to send requests nodeagent builds in a line each.
    """

    def __init__(self, api_client: Any, *, timeouts: Timeouts | None = None) -> None:
        self.api_client = api_client
        self.timeouts = timeouts or Timeouts()
        self.current_watch: Any = None  # the open watch response, for stop_watch()

    @classmethod
    def from_configuration(cls, configuration: Any, *, timeouts: Timeouts | None = None) -> KubeApi:
        """Build over a ``kubernetes.client.Configuration``.

        urllib3's own retries are switched off: the publisher retries with back-off and jitter, and
        hidden retries underneath would multiply API traffic during an outage.
        """
        from nodeagent.k8s.kubeimport import client_modules

        configuration.retries = False
        return cls(client_modules()["client"].ApiClient(configuration), timeouts=timeouts)

    def close(self) -> None:
        self.api_client.close()

    # --- calls -------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None, body: Any = None,
              content_type: str = "application/json", timeout: Any = None) -> Any:
        """One request; the urllib3 response of a 2xx, else the client's ``ApiException``.

        Non-2xx statuses raise as the generated ``*_without_preload_content`` methods do.
        """
        ApiException = _client()["exceptions"].ApiException  # noqa: N806 - the client's class

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api_client.param_serialize(method=method, resource_path=path, query_params=query or [],
                                                  header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api_client.call_api(*request, _request_timeout=timeout or self.timeouts.pair())
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def _call(self, what: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._raw(what, self._send, method, path, **kwargs)
        try:
            data = response.data
        finally:
            response.release_conn()
        try:
            result = json.loads(data) if data else {}
        except ValueError as exc:
            raise ApiError(f"{what}: the API server sent something that is not JSON") from exc
        if not isinstance(result, dict):
            raise ApiError(f"{what}: expected a JSON object")
        return result

    @staticmethod
    def _raw(what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from urllib3.exceptions import HTTPError

        ApiException = _client()["exceptions"].ApiException  # noqa: N806 - the client's class

        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            body: dict[str, Any] = {}
            try:
                body = json.loads(exc.body) if exc.body else {}
            except (TypeError, ValueError):
                body = {}
            message = body.get("message") if isinstance(body, dict) else None
            raise ApiError(f"{what}: {exc.status} {message or exc.reason}", exc.status,
                           body if isinstance(body, dict) else {}, _retry_after(exc.headers)) from exc
        except (HTTPError, OSError) as exc:
            raise ApiError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def get_node(self, name: str) -> dict[str, Any]:
        return self._call(f"get node {name}", "GET", f"/api/v1/nodes/{quote(name)}")

    def patch_node(self, name: str, patch: dict[str, Any] | list[Any],
                   content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return self._call(f"patch node {name}", "PATCH", f"/api/v1/nodes/{quote(name)}", body=patch,
                          content_type=content_type)

    def watch_node(self, name: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """The watch events of one Node (field selector ``metadata.name``), until the server ends it.

        Yields decoded events (``{"type": ..., "object": {...}}``). A watch ERROR event (410 Gone
        when ``resource_version`` is too old) is raised as :class:`ApiError`. The response is
        exposed as :attr:`current_watch` so that another thread can cut the stream short.
        """
        iter_resp_lines = _client()["watch"].iter_resp_lines

        query = [("fieldSelector", f"metadata.name={name}"), ("watch", "true"), ("allowWatchBookmarks", "true"),
                 ("resourceVersion", resource_version), ("timeoutSeconds", str(timeout_seconds))]
        response = self._raw(f"watch node {name}", self._send, "GET", "/api/v1/nodes", query=query,
                             timeout=self.timeouts.pair(timeout_seconds + 30.0))
        self.current_watch = response
        try:
            for line in _lines(iter_resp_lines, response, name):
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("watch node %s: skipping an undecodable line", name)
                    continue
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(f"watch node {name}: {status.get('code')} {status.get('message', '')}",
                                   status.get("code"), status)
                yield event
        finally:
            self.current_watch = None
            response.release_conn()

    def stop_watch(self) -> None:
        """Unblock a watch read from another thread (used by the loop's ``stop``)."""
        response = self.current_watch
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # already closed, or a urllib3 without shutdown()
                log.debug("watch shutdown failed", exc_info=True)

    def get_topology(self, name: str) -> dict[str, Any]:
        return self._call(f"get noderesourcetopology {name}", "GET", f"{NRT_PATH}/{quote(name)}")

    def create_topology(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("create noderesourcetopology", "POST", NRT_PATH, body=body)

    def replace_topology(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(f"replace noderesourcetopology {name}", "PUT", f"{NRT_PATH}/{quote(name)}", body=body)

    def node_features_exist(self, node_name: str) -> bool:
        """Whether NFD NodeFeature objects name this node (False when NFD's CRD is not installed)."""
        try:
            found = self._call(f"list nodefeatures of {node_name}", "GET", NODEFEATURE_PATH,
                               query=[("labelSelector", f"{NODEFEATURE_NODE_LABEL}={node_name}"), ("limit", "1")])
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return bool(found.get("items"))

    def create_event(self, body: dict[str, Any], namespace: str = EVENTS_NAMESPACE) -> dict[str, Any]:
        return self._call("create event", "POST", f"/api/v1/namespaces/{quote(namespace)}/events", body=body)


def _retry_after(headers: Any) -> float | None:
    """The ``Retry-After`` seconds of a response (API Priority and Fairness sends it with 429)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None  # the HTTP-date form: the API server does not use it


def _lines(iter_resp_lines: Any, response: Any, name: str) -> Iterator[str]:
    """Lines of a watch stream; a connection cut mid-stream is an :class:`ApiError` (retryable)."""
    from urllib3.exceptions import HTTPError

    try:
        yield from iter_resp_lines(response)
    except (HTTPError, OSError, ValueError) as exc:
        raise ApiError(f"watch node {name}: stream ended: {type(exc).__name__}: {exc}") from exc
