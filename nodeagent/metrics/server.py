"""The ``/metrics`` endpoint on the general :class:`~nodeagent.httpserver.HttpServer`.

``/metrics`` negotiates the text or OpenMetrics format from the ``Accept`` header (as Prometheus
sends it); the server gzips when the client accepts it. The ``serve`` command adds ``/healthz``
and ``/readyz`` with :meth:`MetricsServer.add_route`; this module knows nothing about them.
"""

from __future__ import annotations

from collections.abc import Callable

from nodeagent.httpserver import HttpServer, Request, Response, parse_listen
from nodeagent.metrics.prom import CollectorRegistry, choose_encoder

__all__ = ["Exposition", "MetricsServer", "Request", "Response", "parse_listen", "registry_exposition"]

Exposition = Callable[[str], tuple[bytes, str]]
"""Accept header → (body, content type): one scrape. ``NodeMetrics.exposition`` is one."""


def registry_exposition(registry: CollectorRegistry) -> Exposition:
    """Serve a plain prometheus_client registry, with its own content negotiation."""

    def expose(accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type

    return expose


class MetricsServer(HttpServer):
    """Serves an exposition on ``/metrics``; more routes via :meth:`add_route`.

    ``source`` is a scrape function (``NodeMetrics.exposition``) or a prometheus_client registry.
    """

    def __init__(self, source: Exposition | CollectorRegistry, listen: str = "127.0.0.1:9464") -> None:
        super().__init__(listen, thread_name="metrics-http")
        self._expose = registry_exposition(source) if isinstance(source, CollectorRegistry) else source
        self.add_route("/metrics", self._metrics)

    def _metrics(self, request: Request) -> Response:
        body, content_type = self._expose(request.headers.get("accept", ""))
        return Response(200, body, content_type)
