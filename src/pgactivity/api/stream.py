"""GET /api/activity/stream: Server-Sent Events for the caller's organization."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from litestar import Request, get
from litestar.openapi import ResponseSpec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pgactivity.api.common import int_param, principal, runtime, text_param
from pgactivity.events import HEARTBEAT, Filters
from pgactivity.session import ActivitySession, Batch

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


def sse_bytes(batch: Batch) -> bytes:
    return b"".join(HEARTBEAT if event is None else event.sse for event in batch)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


RAW_SEND = "pgactivity.send"


class RawSend:
    """The outermost ASGI layer: keeps the server's own `send` in the scope, so that a stream's
    body (thousands of writes a second) skips the per-message wrappers of the framework; the
    response start still goes through them, so the framework knows the response has begun."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[RAW_SEND] = send  # type: ignore[literal-required]
        await self.app(scope, receive, send)


class EventStream:
    """The SSE response as a bare ASGI app: the stream runs in the request's own task, and one
    small task waits for the client to go away, then cancels it.

    Litestar's Stream response runs an anyio task group per response for the same job; with
    thousands of mostly idle streams that was about a quarter of the memory each one held.
    """

    __slots__ = ("session",)

    def __init__(self, session: ActivitySession) -> None:
        self.session = session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        active = True

        def client_gone(_: object) -> None:
            if active:
                task.cancel()

        raw: Send = scope.get(RAW_SEND, send)  # type: ignore[assignment]
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(client_gone)
        try:
            async with self.session as session:
                await send(_START)
                await raw({"type": "http.response.body", "body": RETRY, "more_body": True})
                async for batch in session.opening():
                    await raw({"type": "http.response.body", "body": sse_bytes(batch), "more_body": True})
                while (live := await session.next_batch()) is not None:
                    if live:
                        await raw({"type": "http.response.body", "body": sse_bytes(live), "more_body": True})
            await raw(_END)
        except asyncio.CancelledError:
            if not (watcher.done() and not watcher.cancelled()):
                raise  # cancelled by the server, not by the client
            task.uncancel()  # the client went away: the stream is over
        finally:
            active = False
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


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
    return EventStream(ActivitySession(runtime(request), who, filters, last_id))
