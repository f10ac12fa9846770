"""A fault-injecting HTTPS proxy in front of the real kube-apiserver.

The real server does not fail on demand: a 5xx, a reply slower than the client's timeout, a dropped
connection or a watch that has expired (410) come from here. Everything else is forwarded untouched
(method, path, query, body, the client's own ``Authorization``), so the server authenticates,
authorizes and admits each request as the client that sent it. Streams (watches) are relayed chunk
by chunk as they arrive. Every request is recorded (verb, resource, status), so a test can assert
"zero writes" or "no GET: the watch is the only reader".
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
#: Headers of one hop, which the proxy sets itself on the next (and no compression: bodies pass as they are).
_HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                          "upgrade", "content-length", "accept-encoding"})


@dataclass
class Fault:
    """What to do to the next ``times`` matching requests."""

    status: int | None = None  # answer with this error status (a Status body, as the server sends)
    delay: float = 0.0  # sleep first (longer than the client's timeout: a timeout), then forward
    drop: bool = False  # close the connection without answering
    expire: bool = False  # a watch: answer with the 410 Expired ERROR event the server sends when compacted
    before: Callable[[], None] | None = None  # run first (another writer racing this request)
    retry_after: int | None = None  # send a Retry-After header with the error status
    method: str | None = None
    verb: str | None = None  # get | list | watch | create | update | patch | delete
    resource: str | None = None  # nodes | noderesourcetopologies | events | …
    times: int = 1

    def matches(self, method: str, verb: str, resource: str) -> bool:
        return ((self.method is None or self.method == method) and (self.verb is None or self.verb == verb)
                and (self.resource is None or self.resource == resource))


@dataclass(frozen=True)
class Request:
    """One request as the proxy saw it, with the status the client got (0: no answer)."""

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


def classify(method: str, path: str, query: dict[str, str]) -> tuple[str, str, str | None]:
    """(verb, resource, name) of a Kubernetes API request path, as the apiserver's RequestInfo does."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return method.lower(), path, None
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else None
    watch = query.get("watch") in ("true", "1")
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if verb is None:
        if method == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            verb = "watch" if watch else ("get" if name else "list")
    return verb, resource, name


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


_REASONS = {429: "TooManyRequests", 500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable",
            504: "Timeout", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 410: "Expired"}


class FaultProxy:
    """HTTPS on a free loopback port, forwarding to ``upstream`` (https://127.0.0.1:PORT).

    ``cert``/``key`` serve TLS (the control plane's serving certificate, valid for 127.0.0.1) and
    ``ca`` verifies the upstream, so a kubeconfig for the proxy carries the control plane's CA.
    """

    def __init__(self, upstream: str, *, ca: Path, cert: Path, key: Path) -> None:
        split = urlsplit(upstream)
        self.upstream_host, self.upstream_port = split.hostname or "127.0.0.1", split.port or 443
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.latency = 0.0
        self._client_context = ssl.create_default_context(cafile=str(ca))
        self._server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_context.load_cert_chain(str(cert), str(key))
        self._httpd: ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = self._server_context.wrap_socket(self._httpd.socket, server_side=True,
                                                              do_handshake_on_connect=False)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         name="fault-proxy", daemon=True).start()
        self.url = f"https://127.0.0.1:{self._httpd.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
        with self.lock:
            for sock in list(self._sockets):  # open watches end now, as when a server goes away
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults and the request log ----------------------------------------------------------

    def inject(self, **fault: Any) -> Fault:
        added = Fault(**fault)
        with self.lock:
            self.faults.append(added)
        return added

    def take_fault(self, method: str, verb: str, resource: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, verb, resource):
                    fault.times -= 1
                    return fault
        return None

    def record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def count(self, *, verb: str | None = None, resource: str | None = None, method: str | None = None,
              since: int = 0, writes: bool | None = None, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests[since:]
                       if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
                       and (method is None or r.method == method) and (status is None or r.status == status)
                       and (writes is None or r.is_write == writes))

    def mark(self) -> int:
        """A position in the request log, for ``count(since=…)``."""
        with self.lock:
            return len(self.requests)

    def upstream(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.upstream_host, self.upstream_port, context=self._client_context,
                                           timeout=600)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner.lock:
            self.owner._sockets.add(self.connection)

    def finish(self) -> None:
        with self.owner.lock:
            self.owner._sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            self.connection.do_handshake()  # type: ignore[attr-defined]
            super().handle()

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
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        verb, resource, name = classify(method, split.path, query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type") if body else None
        owner = self.owner
        if owner.latency:
            time.sleep(owner.latency)
        fault = owner.take_fault(method, verb, resource)
        if fault is not None:
            if fault.before is not None:
                fault.before()
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                owner.record(Request(method, verb, resource, name, 0, content_type))
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.expire:
                owner.record(Request(method, verb, resource, name, 200, content_type))
                event = {"type": "ERROR", "object": _status_body(
                    410, "Expired", f"too old resource version: {query.get('resourceVersion', '')}")}
                self._send_stream_start(200, {"Content-Type": "application/json"})
                self._chunk(json.dumps(event).encode() + b"\n")
                self._chunk(b"")
                return
            if fault.status is not None:
                owner.record(Request(method, verb, resource, name, fault.status, content_type))
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                self._send(fault.status, _status_body(fault.status, _REASONS.get(fault.status, "Unknown"),
                                                      f"injected by the test proxy: {fault.status}"), headers)
                return
        self._forward(method, body, verb=verb, resource=resource, name=name, content_type=content_type)

    def _forward(self, method: str, body: bytes, *, verb: str, resource: str, name: str | None,
                 content_type: str | None) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        connection = self.owner.upstream()
        try:
            connection.request(method, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException):
            self.owner.record(Request(method, verb, resource, name, 0, content_type))
            self.close_connection = True
            return
        self.owner.record(Request(method, verb, resource, name, response.status, content_type))
        passed = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS}
        try:
            if response.getheader("Transfer-Encoding", "").lower() == "chunked" or verb == "watch":
                self._send_stream_start(response.status, passed)
                while True:
                    data = response.read1(65536)
                    if not data:
                        break
                    self._chunk(data)
                self._chunk(b"")
            else:
                data = response.read()
                self.send_response(response.status)
                for key, value in passed.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
        except (OSError, http.client.HTTPException):  # either side went away mid-answer: so does this one
            self.close_connection = True
        finally:
            connection.close()

    def _send_stream_start(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
