"""A small Kubernetes API server for the publisher's tests: real HTTP, real chunked watches.

It speaks enough of the API for the real ``kubernetes`` client to publish against it:

* ``/api/v1/nodes[/{name}]``: GET, LIST, WATCH (``fieldSelector=metadata.name=…``, resuming from a
  ``resourceVersion``, ``timeoutSeconds``, bookmarks, ``410 Gone`` once history is compacted),
  PATCH in all three flavours (JSON merge, strategic merge, JSON patch), PUT, POST, DELETE;
* ``/apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies[/{name}]``: create, get, list,
  replace, merge-patch, delete (404 everywhere while the CRD is "not installed");
* ``/api/v1/namespaces/{ns}/events``: create and list;
* ``/apis/nfd.k8s-sigs.io/v1alpha1/nodefeatures``: list across namespaces by an equality
  ``labelSelector`` (404 until :meth:`add_node_feature` "installs" NFD's CRD).

Every object carries a ``resourceVersion`` from one global counter, as etcd hands them out; a
write that names an older one is a 409 Conflict. Faults (a status, a delay longer than the
client's timeout, a dropped connection) are injected per request kind, a latency can be added to
every request, and every request is counted, so tests can assert "zero writes".
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

NRT_PREFIX = "/apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})

_ROUTES = [
    (re.compile(r"^/api/v1/nodes$"), "nodes", False),
    (re.compile(r"^/api/v1/nodes/(?P<name>[^/]+)$"), "nodes", True),
    (re.compile(rf"^{NRT_PREFIX}$"), "noderesourcetopologies", False),
    (re.compile(rf"^{NRT_PREFIX}/(?P<name>[^/]+)$"), "noderesourcetopologies", True),
    (re.compile(r"^/api/v1/namespaces/(?P<namespace>[^/]+)/events$"), "events", False),
    (re.compile(r"^/apis/nfd\.k8s-sigs\.io/v1alpha1/nodefeatures$"), "nodefeatures", False),
]

# Strategic merge: the lists of a Node that merge by a key instead of being replaced.
_SMP_MERGE_KEYS = {("status", "conditions"): "type", ("status", "addresses"): "type"}


@dataclass
class Fault:
    """What to do to the next ``times`` matching requests."""

    status: int | None = None  # answer with this error status
    delay: float = 0.0  # sleep first (longer than the client's timeout: a timeout)
    drop: bool = False  # close the connection without answering
    before: Callable[[], None] | None = None  # run first (another writer racing this request)
    retry_after: int | None = None  # send a Retry-After header with the error status
    method: str | None = None
    verb: str | None = None  # get | list | watch | create | update | patch | delete
    resource: str | None = None  # nodes | noderesourcetopologies | events
    times: int = 1

    def matches(self, method: str, verb: str, resource: str) -> bool:
        return ((self.method is None or self.method == method) and (self.verb is None or self.verb == verb)
                and (self.resource is None or self.resource == resource))


@dataclass(frozen=True)
class Request:
    method: str
    verb: str
    resource: str
    name: str | None
    status: int
    content_type: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


class ApiStatus(Exception):  # noqa: N818 - it is the API's Status object, not only an error
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


# --- patch semantics -------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Kubernetes strategic merge patch, for the Node fields that matter here.

    Maps merge (``null`` deletes, ``$patch: replace|delete`` honoured); lists replace, except the
    ones with a merge key, which merge element-wise by it.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        merge_key = _SMP_MERGE_KEYS.get((*path, key))
        if merge_key and isinstance(value, list) and isinstance(result.get(key), list):
            merged = {item.get(merge_key): item for item in result[key]}
            for item in value:
                merged[item.get(merge_key)] = strategic_merge_patch(merged.get(item.get(merge_key)), item)
            result[key] = list(merged.values())
        else:
            merged_value = strategic_merge_patch(result.get(key), value, (*path, key))
            if merged_value is None:
                result.pop(key, None)
            else:
                result[key] = merged_value
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiStatus(422, "Invalid", f"json patch path {path!r} does not start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ApiStatus(422, "Invalid", f"json patch: path /{'/'.join(parts)} does not exist")
    return node, parts[-1]


def _get(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiStatus(422, "Invalid", f"json patch: path /{'/'.join(parts)} does not exist") from exc
    return node


def _remove(doc: Any, parts: list[str]) -> Any:
    parent, last = _parent(doc, parts)
    try:
        return parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
    except (KeyError, IndexError, ValueError) as exc:
        raise ApiStatus(422, "Invalid", f"json patch: cannot remove /{'/'.join(parts)}: it does not exist") from exc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise ApiStatus(422, "Invalid", f"json patch: cannot add at /{'/'.join(parts)}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise ApiStatus(400, "BadRequest", "json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            if parts:
                parent, last = _parent(doc, parts)
                parent[int(last) if isinstance(parent, list) else last] = copy.deepcopy(op["value"])
            else:
                doc = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            source = _pointer(op["from"])
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise ApiStatus(422, "Invalid", f"json patch test failed at {op.get('path')}")
        else:
            raise ApiStatus(400, "BadRequest", f"json patch: unknown op {kind!r}")
    return doc


# --- the store -------------------------------------------------------------------------------


@dataclass
class _WatchEvent:
    rv: int
    type: str
    obj: dict[str, Any]


class FakeApiServer:
    """The API server. ``start()`` returns its URL; use as a context manager in tests."""

    def __init__(self, *, history_limit: int = 10_000) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.revision = 1000
        self.nodes: dict[str, dict[str, Any]] = {}
        self.topologies: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.history: list[_WatchEvent] = []
        self.history_limit = history_limit
        self.compacted = 0  # watches from a resourceVersion below this get 410 Gone
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.latency = 0.0
        self.crd_installed = True
        self.node_features: list[dict[str, Any]] | None = None  # None: NFD's CRD is not installed
        self.bookmark_interval: float | None = None
        self.stopping = False
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._watch_sockets: set[socket.socket] = set()
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        server = self

        class Handler(_Handler):
            api = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-apiserver", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self.url

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
            for sock in list(self._watch_sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> FakeApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test helpers ------------------------------------------------------------------------

    def inject(self, **fault: Any) -> Fault:
        added = Fault(**fault)
        with self.cond:
            self.faults.append(added)
        return added

    def count(self, *, verb: str | None = None, resource: str | None = None, method: str | None = None,
              since: int = 0, writes: bool | None = None, status: int | None = None) -> int:
        with self.cond:
            return sum(1 for r in self.requests[since:]
                       if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
                       and (method is None or r.method == method) and (status is None or r.status == status)
                       and (writes is None or r.is_write == writes))

    def mark(self) -> int:
        """A position in the request log, for ``count(since=…)``."""
        with self.cond:
            return len(self.requests)

    def add_node(self, name: str, *, labels: dict[str, str] | None = None,
                 annotations: dict[str, str] | None = None,
                 taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels or {"kubernetes.io/hostname": name})},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
        if annotations:
            obj["metadata"]["annotations"] = dict(annotations)
        if taints:
            obj["spec"]["taints"] = list(taints)
        with self.cond:
            return copy.deepcopy(self._create("nodes", obj))

    def add_node_feature(self, node: str, *, namespace: str = "node-feature-discovery") -> None:
        """A NodeFeature object as nfd-worker writes one for ``node`` (installs NFD's CRD)."""
        with self.cond:
            self.node_features = [*(self.node_features or []), {
                "apiVersion": "nfd.k8s-sigs.io/v1alpha1", "kind": "NodeFeature",
                "metadata": {"name": node, "namespace": namespace,
                             "labels": {"nfd.node.kubernetes.io/node-name": node}}}]

    def node(self, name: str) -> dict[str, Any]:
        with self.cond:
            return copy.deepcopy(self.nodes[name])

    def mutate_node(self, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Change a Node as another controller would (a MODIFIED event, a new resourceVersion)."""
        with self.cond:
            obj = copy.deepcopy(self.nodes[name])
            change(obj)
            return copy.deepcopy(self._store("nodes", obj, "MODIFIED"))

    def heartbeat(self, name: str) -> dict[str, Any]:
        """What kubelet's status update looks like to a watcher: a MODIFIED event, labels untouched."""
        def beat(obj: dict[str, Any]) -> None:
            obj["status"]["conditions"][0]["lastHeartbeatTime"] = f"{time.time():.6f}"
        return self.mutate_node(name, beat)

    def compact(self) -> None:
        """Forget the watch history, as etcd compaction does: older resourceVersions get 410."""
        with self.cond:
            self.history.clear()
            self.compacted = self.revision + 1

    # --- storage -----------------------------------------------------------------------------

    def _table(self, resource: str) -> dict[str, dict[str, Any]]:
        return self.nodes if resource == "nodes" else self.topologies

    def _store(self, resource: str, obj: dict[str, Any], event: str) -> dict[str, Any]:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self._table(resource)[obj["metadata"]["name"]] = obj
        if resource == "nodes":
            self.history.append(_WatchEvent(self.revision, event, copy.deepcopy(obj)))
            if len(self.history) > self.history_limit:
                dropped = self.history.pop(0)
                self.compacted = dropped.rv + 1
        self.cond.notify_all()
        return obj

    def _create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiStatus(422, "Invalid", "metadata.name: Required value")
        if name in self._table(resource):
            raise ApiStatus(409, "AlreadyExists", f'{resource} "{name}" already exists')
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return self._store(resource, obj, "ADDED")

    def _existing(self, resource: str, name: str) -> dict[str, Any]:
        obj = self._table(resource).get(name)
        if obj is None:
            raise ApiStatus(404, "NotFound", f'{resource} "{name}" not found')
        return obj

    def _update(self, resource: str, name: str, new: dict[str, Any], *, require_rv: bool) -> dict[str, Any]:
        current = self._existing(resource, name)
        meta = new.setdefault("metadata", {})
        wanted = meta.get("resourceVersion")
        if wanted is None and require_rv:
            raise ApiStatus(422, "Invalid",
                            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise ApiStatus(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": '
                                             "the object has been modified; please apply your changes to the "
                                             "latest version and try again")
        if meta.get("name", name) != name:
            raise ApiStatus(400, "BadRequest", "the name of the object does not match the name on the URL")
        for immutable in ("uid", "creationTimestamp", "name"):
            meta[immutable] = current["metadata"].get(immutable)
        if new == current:
            return current  # a no-op write does not bump the resourceVersion (as the API server)
        return self._store(resource, new, "MODIFIED")

    def _delete(self, resource: str, name: str) -> dict[str, Any]:
        obj = self._table(resource).pop(self._existing(resource, name)["metadata"]["name"])
        self.revision += 1
        if resource == "nodes":
            self.history.append(_WatchEvent(self.revision, "DELETED", copy.deepcopy(obj)))
        self.cond.notify_all()
        return obj

    def _patch(self, resource: str, name: str, content_type: str, patch: Any) -> dict[str, Any]:
        current = copy.deepcopy(self._existing(resource, name))
        if content_type.startswith("application/merge-patch+json"):
            new = merge_patch(current, patch)
        elif content_type.startswith("application/strategic-merge-patch+json"):
            if resource != "nodes":
                raise ApiStatus(415, "UnsupportedMediaType",
                                "strategic merge patch is not supported for custom resources")
            new = strategic_merge_patch(current, patch)
        elif content_type.startswith("application/json-patch+json"):
            new = json_patch(current, patch)
        else:
            raise ApiStatus(415, "UnsupportedMediaType",
                            f"the body of the request was in an unknown format: {content_type}")
        # A resourceVersion the patch itself sets is a precondition (optimistic concurrency).
        new_rv = (new.get("metadata") or {}).get("resourceVersion")
        if new_rv != current["metadata"]["resourceVersion"]:
            raise ApiStatus(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": '
                                             "the object has been modified; please apply your changes to the "
                                             "latest version and try again")
        return self._update(resource, name, new, require_rv=False)

    # --- request dispatch --------------------------------------------------------------------

    def take_fault(self, method: str, verb: str, resource: str) -> Fault | None:
        with self.cond:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, verb, resource):
                    fault.times -= 1
                    return fault
        return None

    def record(self, request: Request) -> None:
        with self.cond:
            self.requests.append(request)

    def handle(self, method: str, resource: str, name: str | None, *, namespace: str | None,
               query: dict[str, str], content_type: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self.cond:
            if resource == "noderesourcetopologies" and not self.crd_installed:
                raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
            if resource == "nodefeatures":
                if self.node_features is None:
                    raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
                wanted = dict(part.split("=", 1) for part in (query.get("labelSelector") or "").split(",") if part)
                items = [copy.deepcopy(f) for f in self.node_features
                         if all(f["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
                return 200, {"kind": "NodeFeatureList", "apiVersion": "nfd.k8s-sigs.io/v1alpha1", "items": items,
                             "metadata": {"resourceVersion": str(self.revision)}}
            if resource == "events":
                if method == "POST":
                    if not isinstance(body, dict) or not body.get("involvedObject"):
                        raise ApiStatus(422, "Invalid", "involvedObject: Required value")
                    event = copy.deepcopy(body)
                    event.setdefault("metadata", {})["namespace"] = namespace
                    self.revision += 1
                    event["metadata"]["resourceVersion"] = str(self.revision)
                    self.events.append(event)
                    return 201, event
                return 200, {"kind": "EventList", "apiVersion": "v1", "items": copy.deepcopy(self.events),
                             "metadata": {"resourceVersion": str(self.revision)}}
            if name is None:
                if method == "POST":
                    return 201, copy.deepcopy(self._create(resource, copy.deepcopy(body)))
                items = [copy.deepcopy(o) for o in self._table(resource).values()
                         if _selected(o, query.get("fieldSelector"))]
                return 200, {"kind": "List", "apiVersion": "v1", "items": items,
                             "metadata": {"resourceVersion": str(self.revision)}}
            if method == "GET":
                return 200, copy.deepcopy(self._existing(resource, name))
            if method == "PUT":
                return 200, copy.deepcopy(self._update(resource, name, copy.deepcopy(body), require_rv=True))
            if method == "PATCH":
                return 200, copy.deepcopy(self._patch(resource, name, content_type, body))
            if method == "DELETE":
                return 200, copy.deepcopy(self._delete(resource, name))
        raise ApiStatus(405, "MethodNotAllowed", f"{method} is not supported here")

    def watch_events(self, query: dict[str, str], deadline: float) -> Any:
        """Generator of watch events (dicts) for a node watch, until ``deadline`` or server stop."""
        selector = query.get("fieldSelector")
        rv_text = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") == "true"
        with self.cond:
            if rv_text in ("", "0"):
                start = self.revision
                initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in self.nodes.values()
                           if _selected(o, selector)]
            else:
                start = int(rv_text)
                initial = []
                if start < self.compacted - 1:
                    yield {"type": "ERROR", "object": ApiStatus(
                        410, "Expired", f"too old resource version: {start} ({self.compacted - 1})").body()}
                    return
        yield from initial
        sent = start
        last_bookmark = time.monotonic()
        while True:
            with self.cond:
                pending = [e for e in self.history if e.rv > sent]
                while not pending and not self.stopping:
                    now = time.monotonic()
                    wake = deadline
                    if bookmarks and self.bookmark_interval:
                        wake = min(wake, last_bookmark + self.bookmark_interval)
                    if now >= wake:
                        break
                    self.cond.wait(wake - now)
                    pending = [e for e in self.history if e.rv > sent]
                revision = self.revision
            if self.stopping or (not pending and time.monotonic() >= deadline):
                return
            for event in pending:
                sent = event.rv
                if _selected(event.obj, selector):
                    yield {"type": event.type, "object": copy.deepcopy(event.obj)}
            if not pending and bookmarks and self.bookmark_interval:
                last_bookmark = time.monotonic()
                sent = max(sent, revision)
                yield {"type": "BOOKMARK", "object": {"kind": "Node", "apiVersion": "v1",
                                                      "metadata": {"resourceVersion": str(revision)}}}


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.replace("==", "=").partition("=")
        if key == "metadata.name" and obj["metadata"]["name"] != value:
            return False
        if key != "metadata.name":
            raise ApiStatus(400, "BadRequest", f'field label not supported: "{key}"')
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        route = next(((m, res, named) for pattern, res, named in _ROUTES if (m := pattern.match(url.path))), None)
        if route is None:
            self._send(404, ApiStatus(404, "NotFound", "the server could not find the requested resource").body())
            self.api.record(Request(method, "unknown", "unknown", None, 404, content_type))
            return
        match, resource, named = route
        name = match.groupdict().get("name")
        namespace = match.groupdict().get("namespace")
        verb = _verb(method, named, query)

        if self.api.latency:
            time.sleep(self.api.latency)
        fault = self.api.take_fault(method, verb, resource)
        if fault is not None:
            if fault.before is not None:
                fault.before()
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                self.api.record(Request(method, verb, resource, name, 0, content_type))
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.status is not None:
                self.api.record(Request(method, verb, resource, name, fault.status, content_type))
                reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}.get(
                    fault.status, "Injected")
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                self._send(fault.status, ApiStatus(fault.status, reason, f"injected {fault.status}").body(), headers)
                return

        if verb == "watch":
            self.api.record(Request(method, verb, resource, name, 200, content_type))
            self._watch(resource, query)
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._reply(Request(method, verb, resource, name, 400, content_type),
                        ApiStatus(400, "BadRequest", "the request body is not JSON"))
            return
        try:
            status, result = self.api.handle(method, resource, name, namespace=namespace, query=query,
                                             content_type=content_type, body=body)
        except ApiStatus as exc:
            self._reply(Request(method, verb, resource, name, exc.code, content_type), exc)
            return
        self.api.record(Request(method, verb, resource, name, status, content_type))
        self._send(status, result)

    def _reply(self, request: Request, error: ApiStatus) -> None:
        self.api.record(replace(request, status=error.code))
        self._send(error.code, error.body())

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (its timeout) before the answer

    def _watch(self, resource: str, query: dict[str, str]) -> None:
        if resource != "nodes":
            self._send(405, ApiStatus(405, "MethodNotAllowed", "watch is served for nodes only").body())
            return
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with self.api.cond:
                self.api._watch_sockets.add(self.connection)
            for event in self.api.watch_events(query, deadline):
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except ApiStatus as exc:
            data = json.dumps({"type": "ERROR", "object": exc.body()}).encode() + b"\n"
            with contextlib.suppress(OSError):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            with self.api.cond:
                self.api._watch_sockets.discard(self.connection)


def _verb(method: str, named: bool, query: dict[str, str]) -> str:
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if named else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def write_kubeconfig(server: FakeApiServer, path: Path) -> str:
    """A kubeconfig file for ``server`` (what ``--kubeconfig`` is given); returns its path."""
    import yaml

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "local", "cluster": {"server": server.url}}],
        "users": [{"name": "agent", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "local", "user": "agent"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)
