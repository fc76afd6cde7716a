"""ASGI middleware: per-request metrics by route template."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from traffic_center.observability.context import method_label
from traffic_center.observability.metrics import Metrics

# Labels from closed sets only (observability.context.method_label): a made-up method would be
# a new series, and a caller's string (a BSN, say) in /metrics.


class MetricsMiddleware:
    """Counts requests by route template (bounded), never by raw path."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = method_label(scope["method"])
            self.metrics.http_requests.labels(template, method, str(status)).inc()
            self.metrics.http_request_duration.labels(template, method).observe(
                time.perf_counter() - started
            )
