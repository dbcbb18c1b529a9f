"""Broker mode's relay: the one process per database that LISTENs and publishes to NATS.

Every process runs a candidate: a connection of its own (application_name
`pgactivity-relay-candidate`) that asks for a session advisory lock every
`poll_seconds` (±10 %). The process that gets it is the relay: on that same
connection it becomes `pgactivity-listener` (so a DBA sees which process it
is), LISTENs, and publishes each notification to its organization's subject.
One connection holds both the lock and the LISTEN: lose one and the other goes
with it, and another candidate takes over within `poll_seconds`. The server
side keeps TCP keepalives short on that connection, so PostgreSQL also frees
the lock of a relay that vanished without closing it, in about ten seconds.

What it publishes is the NOTIFY payload (see broker.py); an event too large to
have ridden in its NOTIFY is read from the log once, here, and published whole
when it fits NATS's max_payload, so that the other processes need not read it
each. A new relay, and a relay whose LISTEN connection was re-made, publishes
`resync` on the control subject first: every process reads the log of the
organizations it follows, and catches up on what went by while no one was
listening. Publishing is best effort: a message NATS does not take (it is
away, or its buffer is full) is dropped and the subscribers find the gap in
seq and read the log. Two relays at once (a lock lost and taken while the old
one still publishes) cost duplicate messages, which subscribers skip by seq.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import psycopg

from pgactivity import broker
from pgactivity.db import connect_dedicated
from pgactivity.events import LogEvent
from pgactivity.listener import APPLICATION_NAME, Listener, Notification

logger = logging.getLogger(__name__)

CANDIDATE_NAME = "pgactivity-relay-candidate"
SQL_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('pgactivity.relay', 0))"
# PostgreSQL's side of the relay's connection: notice a vanished relay (and free its lock) in seconds.
SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
)
MAX_QUEUED = 100_000

Sleep = Callable[[float], Awaitable[None]]


class Publisher(Protocol):
    subjects: broker.Subjects

    async def publish(self, subject: str, data: bytes) -> None: ...

    @property
    def max_payload(self) -> int: ...


class EventReader(Protocol):
    async def event(self, organization_id: str, seq: int) -> LogEvent | None: ...


def message(note: Notification, event: LogEvent | None = None) -> bytes:
    """The NOTIFY payload of a notification (listener.parse reads it back), with `event` if given."""
    event = event or note.event
    if note.seq is None:
        return json.dumps({"org": note.organization_id}).encode()
    head = {"org": note.organization_id, "seq": note.seq}
    if event is None:
        return json.dumps(head).encode()
    if event.committed_at is not None:
        head["at"] = event.committed_at
    return json.dumps(head)[:-1].encode() + b', "event": ' + event.json.encode() + b"}"


class Relay:
    def __init__(
        self,
        conninfo: str,
        publisher: Publisher,
        reader: EventReader,
        *,
        ping_seconds: float = 5.0,
        poll_seconds: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.conninfo = conninfo
        self.publisher = publisher
        self.reader = reader
        self.poll_seconds = poll_seconds
        self._sleep = sleep
        self.listener = Listener(conninfo, ping_seconds=ping_seconds, sleep=sleep, connect=self._acquire)
        self.listener.subscribe(self)
        self.published = 0
        self.dropped = 0
        self.takeovers = 0
        self._queue: deque[Notification | None] = deque()  # None: publish a resync
        self._wake = asyncio.Event()

    @property
    def active(self) -> bool:
        """This process is the relay (holds the lock and LISTENs)."""
        return self.listener.connected

    async def run(self) -> None:
        publishing = asyncio.ensure_future(self._publish())
        try:
            await self.listener.run()
        finally:
            publishing.cancel()

    # -- the lock ----------------------------------------------------------------------

    async def _acquire(self) -> psycopg.AsyncConnection[Any]:
        """A connection that holds the relay lock (waits for it as long as another process has it)."""
        conn = await connect_dedicated(self.conninfo, CANDIDATE_NAME)
        try:
            for statement in SERVER_KEEPALIVES:
                await conn.execute(statement)
            while True:
                cur = await conn.execute(SQL_TRY_LOCK)
                row = await cur.fetchone()
                if row and row[0]:
                    break
                await self._sleep(self.poll_seconds * random.uniform(0.9, 1.1))
            await conn.execute(f"SET application_name = '{APPLICATION_NAME}'")
        except BaseException:
            await conn.close()
            raise
        self.takeovers += 1
        logger.info("this process is the relay now", extra={"relay_state": "relay"})
        return conn

    # -- Handler: called by the listener ----------------------------------------------

    def on_notification(self, note: Notification) -> None:
        if len(self._queue) >= MAX_QUEUED:  # NATS does not keep up: let the subscribers read the log
            self.dropped += len(self._queue)
            self._queue.clear()
            self._queue.append(None)
        self._queue.append(note)
        self._wake.set()

    def on_resync(self) -> None:
        self._queue.append(None)
        self._wake.set()

    # -- publishing ----------------------------------------------------------------------

    async def _publish(self) -> None:
        subjects = self.publisher.subjects
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                note = self._queue.popleft()
                try:
                    if note is None:
                        await self.publisher.publish(subjects.control, broker.RESYNC)
                    else:
                        data = await self._message(note)
                        await self.publisher.publish(subjects.events(note.organization_id), data)
                    self.published += 1
                except Exception as exc:  # NATS away or full, a log read failed: subscribers read the log
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 1000 == 0:
                        logger.warning("relay: cannot publish (%s); subscribers will read the log", exc)

    async def _message(self, note: Notification) -> bytes:
        if note.event is None and note.seq is not None:
            event = await self.reader.event(note.organization_id, note.seq)
            if event is not None:
                data = message(note, event)
                if len(data) <= self.publisher.max_payload:
                    return data
        return message(note)
