"""GET /metrics (Prometheus text format) and the middleware that times every request.

/metrics needs no API key: Prometheus scrapes it from inside the deployment. Set
REGIMEN_METRICS_TOKEN to require `Authorization: Bearer <token>` (a separate secret, so a
scraper never holds a team's key).
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import SettingsDep
from service.observability import ApiMetrics

router = APIRouter(tags=["observability"])


@router.get("/metrics", include_in_schema=False)
def metrics(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    if settings.metrics_token:
        expected = f"Bearer {settings.metrics_token}"
        if authorization is None or not hmac.compare_digest(authorization, expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "GET /metrics needs 'Authorization: Bearer <REGIMEN_METRICS_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
    api_metrics: ApiMetrics = request.app.state.metrics
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)


def route_label(scope: Scope) -> str:
    """The route's template (/v1/jobs/{job_id}), never the raw path: labels stay few."""
    route = scope.get("route")
    if isinstance(route, BaseRoute) and hasattr(route, "path"):
        return str(route.path)
    path = str(scope.get("path", ""))
    return "/static" if path.startswith("/static/") else "unmatched"


class RequestLatency:
    """Pure ASGI (not BaseHTTPMiddleware): times up to the response headers, so server-sent
    event streams count their time to first byte, not their whole life."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        observed = False

        def observe(code: int) -> None:
            nonlocal observed
            if not observed:
                observed = True
                labels = (scope["method"], route_label(scope), str(code))
                self.histogram.labels(*labels).observe(time.perf_counter() - start)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            observe(500)
            raise
