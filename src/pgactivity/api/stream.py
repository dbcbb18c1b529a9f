"""GET /api/activity/stream: Server-Sent Events for the caller's organization.

New clients get a snapshot, reconnecting clients (Last-Event-ID) get an exact
replay from the log; both then go live with nothing lost or repeated. The
client is subscribed to the hub *before* the snapshot or replay is read, and
drops the buffered live events the snapshot or replay already covered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, get
from litestar.response import Stream

from pgactivity.api.common import int_param, principal, runtime, text_param
from pgactivity.auth import Principal
from pgactivity.events import Filters, sse_frame
from pgactivity.runtime import Runtime
from pgactivity.store import Gap

logger = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


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


async def event_stream(rt: Runtime, who: Principal, filters: Filters, last_id: int | None) -> AsyncIterator[bytes]:
    org = who.organization_id
    sub = rt.hub.subscribe(org, filters)
    logger.info("stream opened", extra={"organization_id": org, "resume": last_id is not None})
    try:
        yield b"retry: 2000\n\n"
        await rt.listener.track(org)
        position: int | None = None
        if last_id is not None and await rt.store.replayable(org, last_id):
            position = last_id
            try:
                async for page in rt.store.replay(org, last_id):
                    position = page[-1].seq
                    chunk = b"".join(e.sse for e in page if filters.matches(e.session_id, e.agent_type, e.category))
                    if chunk:
                        yield chunk
            except Gap:
                position = None  # purged under us: fall back to a reset snapshot
        if position is None:
            snapshot = await rt.store.snapshot(org, filters, rt.settings.snapshot_limit, reset=last_id is not None)
            position = snapshot.seq
            yield sse_frame(snapshot.seq, snapshot.json)
        sub.start_after(position)
        while (live := await sub.next_chunk()) is not None:
            if live:
                yield live
    finally:
        rt.hub.unsubscribe(sub)
        logger.info("stream closed", extra={"organization_id": org, "reason": sub.closed or "client"})


@get("/api/activity/stream", summary="Live activity events (SSE)")
async def activity_stream(request: Request[Any, Any, Any]) -> Stream:
    """Server-Sent Events of the caller's organization: snapshot or replay, then live."""
    who = principal(request)
    filters = stream_filters(request)
    last_id = last_event_id(request)
    rt = runtime(request)
    return Stream(
        event_stream(rt, who, filters, last_id),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
