"""GET /api/activity/stream: Server-Sent Events for the caller's organization."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, get
from litestar.response import Stream

from pgactivity.api.common import int_param, principal, runtime, text_param
from pgactivity.auth import Principal
from pgactivity.events import HEARTBEAT, Filters
from pgactivity.runtime import Runtime
from pgactivity.session import activity_session

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
RETRY = b"retry: 2000\n\n"


def stream_filters(request: Request[Any, Any, Any]) -> Filters:
    return Filters(
        session_id=text_param(request, "sessionId"),
        agent_type=text_param(request, "agentType"),
        category=text_param(request, "category"),
    )


def last_event_id(request: Request[Any, Any, Any]) -> int | None:
    header = request.headers.get("last-event-id")
    if header is not None and header.strip() != "":
        return int_param(request, "Last-Event-ID", header.strip())
    return int_param(request, "lastEventId")


async def sse_body(rt: Runtime, who: Principal, filters: Filters, last_id: int | None) -> AsyncIterator[bytes]:
    yield RETRY
    async for batch in activity_session(rt, who, filters, last_id):
        yield b"".join(HEARTBEAT if event is None else event.sse for event in batch)


@get("/api/activity/stream", summary="Live activity events (SSE)")
async def activity_stream(request: Request[Any, Any, Any]) -> Stream:
    """Server-Sent Events of the caller's organization: a snapshot (or, with Last-Event-ID, the
    exact replay of what was missed), then live events. Filters: sessionId, agentType, category."""
    who = principal(request)
    filters = stream_filters(request)
    last_id = last_event_id(request)
    return Stream(
        sse_body(runtime(request), who, filters, last_id),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
