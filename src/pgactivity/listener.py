"""The one LISTEN connection of a process. It only receives; it never reads the log.

Two loops, as in procrastinate and River: an outer one that (re)connects with
jittered exponential backoff, an inner one over `notifies()` that pings the
server when it has been quiet, so that a dead connection shows in seconds.

Each NOTIFY on `agent_activity` becomes a `Notification` handed to every
subscribed `Handler`, in the order PostgreSQL delivered them (commit order).
The trigger (sql/migrations/*_hot_path.sql) sends one of three payloads:

    {"org": "o", "seq": 42, "at": 1764590000.123456, "event": {...}}   the event itself
    {"org": "o", "seq": 42}                                            too large to ride along
    {"org": "o"}                                                       more events of a big transaction

The first one is delivered without a read of the log; the others, and any
doubt, cost a read (log_tail.py). NOTIFYs sent while the connection was down
are gone: after every (re)connect, handlers get `on_resync()` and read the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from pgactivity.backoff import Backoff
from pgactivity.db import connect_dedicated
from pgactivity.events import LogEvent

logger = logging.getLogger(__name__)

CHANNEL = "agent_activity"
APPLICATION_NAME = "pgactivity-listener"
_EVENT_KEY = ', "event": '


@dataclass(frozen=True, slots=True)
class Notification:
    """One NOTIFY: an organization's event seq, and the event itself when it rode along.

    seq is None for a transaction's "and more" notification: read the log."""

    organization_id: str
    seq: int | None
    event: LogEvent | None = None


def parse(payload: str) -> Notification | None:
    """The notification in a payload; None for anything else on the channel (logged at DEBUG)."""
    head, found, body = payload.partition(_EVENT_KEY)
    try:
        # The header never holds the event: `, "event": ` cannot occur inside the
        # organization's JSON string (its quotes are escaped), so the first one is ours.
        data = json.loads(head + "}" if found else head)
        organization_id = data["org"]
        seq = data.get("seq")
        if not isinstance(organization_id, str) or not (seq is None or type(seq) is int):
            raise TypeError(payload[:100])
        if found and seq is None:
            raise ValueError(payload[:100])  # an event needs its seq
    except (ValueError, KeyError, TypeError, RecursionError):
        logger.debug("ignoring a foreign notification on %s", CHANNEL)
        return None
    if not found or seq is None:
        return Notification(organization_id, seq)
    try:
        if not body.endswith("}"):
            raise ValueError("cut short")
        text = body[:-1]
        event = json.loads(text)
        if event["seq"] != seq or event["organizationId"] != organization_id:
            raise ValueError("header and event disagree")
        routing = (event.get("sessionId"), event.get("agentType"), event.get("category"))
        if not all(v is None or isinstance(v, str) for v in routing):
            raise TypeError("routing fields are not strings")
        at = data.get("at")
        committed_at = float(at) if isinstance(at, int | float) else None
    except (ValueError, KeyError, TypeError, RecursionError):
        # Nested too deep for Python's parser, or odd: the log read handles it.
        return Notification(organization_id, seq)
    return Notification(organization_id, seq, LogEvent.from_row(organization_id, seq, *routing, text, committed_at))


class Handler(Protocol):
    """What a consumer of the LISTEN connection implements. Both are called on the event
    loop and must not block: note what to do and return."""

    def on_notification(self, note: Notification) -> None: ...

    def on_resync(self) -> None:
        """The connection was (re)made: notifications sent before may be lost, read the log."""


class Subscription:
    """A handler's place on the listener; `cancel()` ends it."""

    __slots__ = ("_handlers", "handler")

    def __init__(self, handlers: list[Handler], handler: Handler) -> None:
        self._handlers = handlers
        self.handler = handler

    def cancel(self) -> None:
        # By identity: two handlers may well compare equal.
        self._handlers[:] = [h for h in self._handlers if h is not self.handler]


Sleep = Callable[[float], Awaitable[None]]
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


class Listener:
    def __init__(
        self,
        conninfo: str,
        *,
        ping_seconds: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        connect: Connect | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.ping_seconds = ping_seconds
        self._sleep = sleep
        self._connect = connect or (lambda: connect_dedicated(conninfo, APPLICATION_NAME))
        self._handlers: list[Handler] = []
        self.connected = False
        self.reconnects = 0
        self.notifications = 0

    def subscribe(self, handler: Handler) -> Subscription:
        """The one way to receive notifications (River's `Listen`)."""
        self._handlers.append(handler)
        return Subscription(self._handlers, handler)

    async def run(self) -> None:
        """Listen forever; reconnect on any failure. Cancel to stop."""
        retry = Backoff()
        while True:
            try:
                conn = await self._connect()
            except (psycopg.Error, OSError) as exc:
                delay = retry.next()
                logger.warning("listener cannot connect, retrying in %.1fs: %s", delay, exc)
                await self._sleep(delay)
                continue
            try:
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected = True
                    retry.reset()
                    logger.info("listener connected", extra={"listener_state": "connected"})
                    for handler in list(self._handlers):
                        handler.on_resync()
                    await self._listen(conn)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                logger.warning("listener connection lost: %s", exc, extra={"listener_state": "disconnected"})
            except Exception:
                # Anything else is a bug, but a silent stream is worse: log it and listen again.
                logger.exception("listener failed", extra={"listener_state": "disconnected"})
            finally:
                self.connected = False
            self.reconnects += 1
            await self._sleep(retry.next())

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            quiet = True
            async for notify in conn.notifies(timeout=self.ping_seconds):
                quiet = False
                self._deliver(notify.payload)
            if quiet:
                # A dead connection shows here in seconds, not at the next TCP timeout. (Not
                # wait_for: before Python 3.12 it can swallow a cancellation that races it.)
                async with asyncio.timeout(self.ping_seconds):
                    await conn.execute("SELECT 1")

    def _deliver(self, payload: str) -> None:
        note = parse(payload)
        if note is None:
            return
        self.notifications += 1
        for handler in list(self._handlers):
            handler.on_notification(note)
