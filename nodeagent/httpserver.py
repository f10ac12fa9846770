"""A small general HTTP server: exact-path routes of plain functions, ``GET``/``HEAD``, gzip when accepted.

It knows no endpoint: metrics (``/metrics``) and the daemon's health (``/healthz``, ``/readyz``) add
theirs with :meth:`HttpServer.add_route`, so neither depends on the other for its server.

The server is a ``ThreadingHTTPServer`` with daemon threads and a per-connection socket timeout,
so a stuck client cannot keep the process from exiting or hold a thread forever. Its accept
backlog is :data:`ACCEPT_BACKLOG` (the standard library's is 5: fifty scrapers connecting at once
would wait for SYN retransmits). A client that resets or drops its connection is logged as one
line at debug through ``logging`` (so the JSON log stays JSON), never as a raw traceback.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

ACCEPT_BACKLOG = 128  # listen(2) backlog; the kernel caps it at net.core.somaxconn
GZIP_LEVEL = 1  # the exposition is repetitive text: level 1 gets most of the size for a fraction of the CPU

def gzip_member(body: bytes) -> bytes:
    """``body`` as one gzip member, at level 1.

    With ISA-L (python-isal, installed where it has wheels: x86_64 and aarch64) where it can be
    imported, else with zlib; both write a standard gzip member, only the deflate differs. On a
    dense VM node the exposition is >1 MB and Prometheus asks for gzip at every scrape: ISA-L
    deflates 1.45 MB in 0.85 ms against zlib's 5.5 ms, and a little smaller (bench/metrics).
    """
    return _deflater()(body)


@cache
def _deflater() -> Callable[[bytes], bytes]:
    try:
        from isal import isal_zlib
    except ImportError:
        return _zlib_gzip
    return partial(isal_zlib.compress, level=GZIP_LEVEL, wbits=16 + isal_zlib.MAX_WBITS)


def _zlib_gzip(body: bytes) -> bytes:
    return zlib.compress(body, GZIP_LEVEL, wbits=16 + zlib.MAX_WBITS)  # a gzip member, in one pass


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Response]


def parse_listen(address: str) -> tuple[str, int]:
    """``127.0.0.1:9464``, ``[::1]:9464``, ``:9464`` (every interface) → (host, port).

    Raises ValueError naming the accepted forms.
    """
    form = "HOST:PORT, [IPV6]:PORT or :PORT (e.g. 127.0.0.1:9464)"
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {address!r} is not {form}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen address {address!r}: put an IPv6 address in brackets ({form})")
    return host or "0.0.0.0", int(port_text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = ACCEPT_BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], routes: dict[str, Route]):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.routes = routes
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's ``socket.getfqdn`` of the address: a reverse DNS lookup at start-up
        (of the node's own name for ``:PORT``), and the IDNA codec's tables resident for good, all for
        ``server_name``, which only CGI handlers read."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        """A failed connection, logged through ``logging`` (socketserver prints a traceback to stderr).

        A client that went away (reset, broken pipe, timeout) is routine for a scrape endpoint: one
        debug line. Anything else is a bug in this server: a warning carrying the exception.
        """
        exc = sys.exc_info()[1]
        peer = client_address[0] if isinstance(client_address, tuple) and client_address else client_address
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("client %s went away: %s", peer, exc.__class__.__name__,
                      extra={"peer": str(peer), "error": str(exc)})
            return
        log.warning("connection from %s failed", peer, exc_info=True, extra={"peer": str(peer)})


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 30  # seconds a client may take to send its request
    # Headers and body leave together (the buffer is flushed after each request) and Nagle is off:
    # two small writes on a kept-alive connection otherwise meet the client's delayed ACK, ~40 ms.
    wbufsize = 1 << 16
    protocol_version = "HTTP/1.1"
    server_version = "nodeagent"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def _handle(self, *, send_body: bool) -> None:
        parts = urlsplit(self.path)
        route = self.server.routes.get(parts.path)
        if route is None:
            response = Response(404, b"not found\n")
        else:
            request = Request(parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()})
            try:
                response = route(request)
            except Exception:  # a broken handler is a 500 for this request, not a dead server
                log.exception("handler for %s failed", parts.path)
                response = Response(500, b"internal error\n")
        body = response.body
        headers = dict(response.headers)
        if "gzip" in self.headers.get("Accept-Encoding", "") and len(body) > 1024 and response.status == 200:
            body = gzip_member(body)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class HttpServer:
    """Serves routes added with :meth:`add_route`, and an index of them on ``/``."""

    def __init__(self, listen: str, thread_name: str = "http") -> None:
        self._routes: dict[str, Route] = {"/": self._index}
        host, port = parse_listen(listen)
        self._server = _Server((host, port), _Handler, self._routes)
        self._thread: threading.Thread | None = None
        self._thread_name = thread_name

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def add_route(self, path: str, route: Route) -> None:
        """Serve ``route`` at ``path`` (exact match); replaces an existing route."""
        self._routes[path] = route

    def start(self) -> Self:
        """Serve in a background (daemon) thread; returns self."""
        self._thread = threading.Thread(target=self._server.serve_forever, name=self._thread_name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _index(self, _request: Request) -> Response:
        links = "".join(f'<li><a href="{p}">{p}</a></li>' for p in sorted(self._routes) if p != "/")
        body = f"<html><head><title>nodeagent</title></head><body><h1>nodeagent</h1><ul>{links}</ul></body></html>"
        return Response(200, body.encode(), "text/html; charset=utf-8")
