"""`create_app`: the Litestar application and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from pgactivity import __version__
from pgactivity.api.activities import get_activity, get_activity_events, search_activities
from pgactivity.api.dashboard import dashboard, static_asset
from pgactivity.api.health import healthz, readyz
from pgactivity.api.metrics import metrics
from pgactivity.api.stream import activity_stream
from pgactivity.api.ws import activity_ws
from pgactivity.errors import AuthenticationError, PgActivityError
from pgactivity.runtime import Runtime
from pgactivity.settings import Settings

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(status: int, code: str, message: str) -> Response[dict[str, Any]]:
    return Response({"error": {"code": code, "message": message}}, status_code=status)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    response = error_body(status, _CODES.get(status, "error"), str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _our_error(_: Request[Any, Any, Any], exc: PgActivityError) -> Response[dict[str, Any]]:
    if isinstance(exc, AuthenticationError):
        response = error_body(401, exc.code, str(exc))
        response.headers["WWW-Authenticate"] = 'Bearer realm="pgactivity"'
        return response
    return error_body(400, exc.code, str(exc))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_body(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal server error")


def create_app(settings: Settings, runtime: Runtime | None = None) -> Litestar:
    """The application. The runtime (pool, listener, hub) opens in the lifespan."""
    rt = runtime or Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    cors = CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None
    app = Litestar(
        route_handlers=[
            activity_stream,
            activity_ws,
            search_activities,
            get_activity,
            get_activity_events,
            healthz,
            readyz,
            metrics,
            dashboard,
            static_asset,
        ],
        lifespan=[lifespan],
        exception_handlers={
            HTTPException: _http_error,
            PgActivityError: _our_error,
            Exception: _unexpected,
        },
        openapi_config=OpenAPIConfig(title="pgactivity", version=__version__, path="/schema"),
        cors_config=cors,
        logging_config=None,
        debug=False,
    )
    app.state.runtime = rt
    return app
