"""Liveness and readiness.

/readyz names each check and its state in a few fixed words, never an
exception's text: that can carry a database host, a user or a path, and the
endpoint has no token. The text goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Request, get
from litestar.response import Response

from pgactivity.api.common import runtime

logger = logging.getLogger(__name__)


@get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Database reachable and LISTEN connected (in broker mode: NATS and relay reported)")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    rt = runtime(request)
    checks: dict[str, Any] = dict(rt.source.checks())
    try:
        async with asyncio.timeout(2):
            async with rt.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = "unreachable"
        logger.warning("readiness: the database does not answer: %s: %s", type(exc).__name__, exc)
    for name in rt.failed_tasks:  # its traceback was logged when it died
        checks[f"task:{name}"] = "died"
    if rt.slack is not None:
        # Informational: readiness is about serving streams, which Slack trouble never affects.
        checks["slack"] = rt.slack.status
    ready = checks["database"] == "ok" and rt.source.ready and not rt.failed_tasks
    return Response(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
