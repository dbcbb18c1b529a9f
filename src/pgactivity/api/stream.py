"""GET /api/activity/stream: Server-Sent Events for the caller's organization."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request, get
from litestar.openapi import ResponseSpec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pgactivity.api.common import int_param, principal, runtime, text_param
from pgactivity.auth import Principal
from pgactivity.events import HEARTBEAT, Filters
from pgactivity.runtime import Runtime
from pgactivity.session import activity_session

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
RETRY = b"retry: 2000\n\n"
_RAW_HEADERS = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SSE_HEADERS.items()]
_START: Message = {"type": "http.response.start", "status": 200, "headers": _RAW_HEADERS}
_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def stream_filters(request: Request[Any, Any, Any]) -> Filters:
    return Filters(
        session_id=text_param(request, "sessionId"),
        agent_type=text_param(request, "agentType"),
        category=text_param(request, "category"),
    )


def last_event_id(request: Request[Any, Any, Any]) -> int | None:
    header = request.headers.get("last-event-id")
    if header is not None and header.strip(" \t") != "":  # HTTP's optional whitespace only
        return int_param(request, "Last-Event-ID", header.strip(" \t"))
    return int_param(request, "lastEventId")


async def sse_body(rt: Runtime, who: Principal, filters: Filters, last_id: int | None) -> AsyncGenerator[bytes, None]:
    yield RETRY
    async for batch in activity_session(rt, who, filters, last_id):
        yield b"".join(HEARTBEAT if event is None else event.sse for event in batch)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream:
    """The SSE response as a bare ASGI app: the stream runs in the request's own task, and one
    small task waits for the client to go away, then cancels it.

    Litestar's Stream response runs an anyio task group per response for the same job; with
    thousands of mostly idle streams that was about a quarter of the memory each one held.
    """

    __slots__ = ("body",)

    def __init__(self, body: AsyncGenerator[bytes, None]) -> None:
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        active = True

        def client_gone(_: object) -> None:
            if active:
                task.cancel()

        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(client_gone)
        try:
            await send(_START)
            async for chunk in self.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send(_END)
        except asyncio.CancelledError:
            if not (watcher.done() and not watcher.cancelled()):
                raise  # cancelled by the server, not by the client
            task.uncancel()  # the client went away: the stream is over
        finally:
            active = False
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.body.aclose()


@get(
    "/api/activity/stream",
    summary="Live activity events (SSE)",
    responses={
        200: ResponseSpec(
            str,
            description="Server-Sent Events: `id: <seq>` and one `data:` line of JSON per event",
            media_type="text/event-stream",
            generate_examples=False,
        )
    },
)
async def activity_stream(request: Request[Any, Any, Any]) -> ASGIApp:
    """Server-Sent Events of the caller's organization: a snapshot (or, with Last-Event-ID, the
    exact replay of what was missed), then live events. Filters: sessionId, agentType, category."""
    who = principal(request)
    filters = stream_filters(request)
    last_id = last_event_id(request)
    return EventStream(sse_body(runtime(request), who, filters, last_id))
