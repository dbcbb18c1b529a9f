"""GET /api/activity/ws: the stream's events over a WebSocket, for clients that cannot use SSE.

One text message per event, exactly the JSON an SSE `data:` line carries (the
snapshot first, or with `?lastEventId=N` the exact replay), from the same
client session as the SSE handler. Heartbeats are `{"type": "heartbeat"}`
messages (browsers cannot see WebSocket pings; uvicorn also pings at the
protocol level). Messages from the client are read and ignored.

Close codes: 4401 bad or missing token, 4400 bad parameter, 4403 a cookie sent
from a foreign page (cross-site WebSocket hijacking), each after one
`{"type": "error", "error": {"code", "message"}}` message. When the server
ends the stream it first sends `{"type": "end", "reason": ...}` (the SSE
stream's last message), then closes: 4401 when the token expired (reconnect
with a fresh token), 1012 on shutdown or for a client too slow to keep up;
either way reconnect with `?lastEventId=<last seq>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any, cast
from urllib.parse import urlsplit

from litestar import Request, WebSocket, websocket
from litestar.exceptions import HTTPException, WebSocketDisconnect

from pgactivity.api.common import principal, runtime
from pgactivity.api.stream import last_event_id, stream_filters
from pgactivity.auth import COOKIE_NAME
from pgactivity.errors import AuthenticationError
from pgactivity.events import StreamEnd
from pgactivity.hub import CLOSED_EXPIRED
from pgactivity.runtime import Runtime
from pgactivity.session import Batch, activity_session

logger = logging.getLogger(__name__)

HEARTBEAT_MESSAGE = '{"type": "heartbeat"}'
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_FORBIDDEN = 4403
CLOSE_SERVER_ENDED = 1012  # "service restart": reconnect with ?lastEventId=
CLOSE_INTERNAL_ERROR = 1011


class Refused(Exception):
    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _authority(netloc: str, scheme: str) -> tuple[str, int | None] | None:
    """(host, port) with the scheme's default port filled in; None if it cannot be read."""
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    return (host, port or _DEFAULT_PORTS.get(scheme)) if host else None


def _foreign_cookie(socket: WebSocket[Any, Any, Any], rt: Runtime) -> bool:
    """A browser on another site sends our cookie along with its WebSocket (no CORS for those).

    Same origin: the Origin's host and port are the Host header's (behind a proxy, the Host the
    browser sent: deploy/nginx.conf passes $http_host), default ports filled in on both sides.
    """
    if socket.headers.get("authorization") or socket.query_params.get("access_token"):
        return False  # an explicit token: the page had to know it
    origin = socket.headers.get("origin")
    if not socket.cookies.get(COOKIE_NAME) or origin is None:
        return False
    if origin in rt.settings.cors_origins:
        return False
    try:
        page = urlsplit(origin)
    except ValueError:
        return True
    mine = _authority(socket.headers.get("host") or "", page.scheme)
    return mine is None or _authority(page.netloc, page.scheme) != mine


async def _refuse(socket: WebSocket[Any, Any, Any], refused: Refused) -> None:
    """Accept, say why in a JSON message, close: a browser sees neither an HTTP status nor a refused handshake."""
    await socket.accept()
    with contextlib.suppress(WebSocketDisconnect, OSError):
        await socket.send_text(
            json.dumps({"type": "error", "error": {"code": refused.code, "message": refused.message}})
        )
        await socket.close(refused.close_code, refused.code)


async def _until_disconnect(socket: WebSocket[Any, Any, Any]) -> None:
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return


@websocket("/api/activity/ws")
async def activity_ws(socket: WebSocket[Any, Any, Any]) -> None:
    """The SSE stream's events as WebSocket text messages. Auth: Bearer header, ?access_token= or the
    cookie. Resume with ?lastEventId=N; filters sessionId, agentType, category."""
    # The shared helpers only read headers, query parameters and cookies, which a WebSocket has too.
    conn = cast("Request[Any, Any, Any]", socket)
    rt = runtime(conn)
    try:
        try:
            who = principal(conn)
            filters = stream_filters(conn)
            last_id = last_event_id(conn)
        except AuthenticationError as exc:
            raise Refused(CLOSE_UNAUTHORIZED, exc.code, str(exc)) from None
        except HTTPException as exc:
            raise Refused(CLOSE_BAD_REQUEST, "bad_request", str(exc.detail)) from None
        if _foreign_cookie(socket, rt):
            raise Refused(CLOSE_FORBIDDEN, "forbidden", "cookie authentication from another origin")
    except Refused as refused:
        await _refuse(socket, refused)
        return

    await socket.accept()

    ended: list[str] = []  # why the server ended the stream (its StreamEnd message)

    async def pump() -> None:
        # Closed explicitly, so the hub subscription ends with the socket even when a send is cancelled.
        session = cast(
            "AsyncGenerator[Batch, None]", activity_session(rt, who, filters, last_id, transport="websocket")
        )
        async with contextlib.aclosing(session):
            async for batch in session:
                for event in batch:
                    await socket.send_text(HEARTBEAT_MESSAGE if event is None else event.json)
                    if isinstance(event, StreamEnd):
                        ended.append(event.reason)

    sender = asyncio.create_task(pump(), name="pgactivity-ws-send")
    receiver = asyncio.create_task(_until_disconnect(socket), name="pgactivity-ws-receive")
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
        await asyncio.wait({sender, receiver})
    # Retrieve both outcomes (an unretrieved task exception is logged as a warning).
    error = None if sender.cancelled() else sender.exception()
    if not receiver.cancelled():
        receiver.exception()
        return  # the client went away
    # The server ended the stream: shutdown, a client too slow to keep up, or an error.
    if error is not None and not isinstance(error, WebSocketDisconnect | OSError):
        logger.error("websocket stream failed", exc_info=error)
        code, reason = CLOSE_INTERNAL_ERROR, "internal error, reconnect with lastEventId"
    elif ended and ended[-1] == CLOSED_EXPIRED:
        code, reason = CLOSE_UNAUTHORIZED, "token expired, reconnect with a fresh token and lastEventId"
    else:
        code, reason = CLOSE_SERVER_ENDED, "stream ended, reconnect with lastEventId"
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.close(code, reason)
