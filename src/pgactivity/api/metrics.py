"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from pgactivity.api.common import runtime
from pgactivity.metrics import CONTENT_TYPE


@get("/metrics", summary="Prometheus metrics", tags=["operations"], sync_to_thread=False)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Clients by organization, events delivered, commit-to-send lag, listener reconnects, slow clients,
    snapshots, replays and purged rows. Unauthenticated, like /healthz: keep it off the public internet."""
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)
