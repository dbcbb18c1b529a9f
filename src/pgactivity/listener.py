"""The one LISTEN connection of a process, and the reader of the log tail.

Two loops, as in procrastinate and River: an outer one that (re)connects with
jittered exponential backoff, an inner one over `notifies()` that pings the
server when it has been quiet. A NOTIFY is only a wake-up: the log is the
truth, so after every (re)connect each tracked organization is read again
from its last delivered seq, and nothing that happened while the connection
was down is lost.

Only organizations with connected clients are tracked (`track`); their log
tail is read in one query per batch and handed to the hub in seq order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from pgactivity.db import connect_dedicated
from pgactivity.events import LogEvent
from pgactivity.store import Store

logger = logging.getLogger(__name__)

CHANNEL = "agent_activity"
APPLICATION_NAME = "pgactivity-listener"


def backoff(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """2^n growth with ±10 % jitter, capped."""
    delay = min(cap, base * (2**attempt))
    return float(delay * random.uniform(0.9, 1.1))


Publish = Callable[[list[LogEvent]], None]


class Listener:
    def __init__(
        self,
        conninfo: str,
        store: Store,
        publish: Publish,
        has_clients: Callable[[str], bool],
        *,
        ping_seconds: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.store = store
        self.publish = publish
        self.has_clients = has_clients
        self.ping_seconds = ping_seconds
        self.cursors: dict[str, int] = {}
        self.connected = False
        self.reconnects = 0
        self.notifications = 0
        self.consumers: list[Callable[[str, int], None]] = []
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._track_lock = asyncio.Lock()

    # -- clients ---------------------------------------------------------

    async def track(self, organization_id: str) -> None:
        """Start following an organization's log. Await before reading a snapshot."""
        if organization_id in self.cursors:
            return
        async with self._track_lock:
            if organization_id in self.cursors:
                return
            seqs = await self.store.last_seqs([organization_id])
            self.cursors.setdefault(organization_id, seqs.get(organization_id, 0))
        self._mark(organization_id)

    def _mark(self, organization_id: str) -> None:
        self._dirty.add(organization_id)
        self._wake.set()

    # -- the LISTEN connection ---------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await connect_dedicated(self.conninfo, APPLICATION_NAME)

    async def run(self) -> None:
        """Listen forever; reconnect on any failure. Cancel to stop."""
        attempt = 0
        while True:
            try:
                conn = await self._connect()
            except (psycopg.Error, OSError) as exc:
                delay = backoff(attempt)
                attempt += 1
                logger.warning("listener cannot connect, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                continue
            try:
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected = True
                    attempt = 0
                    logger.info("listener connected", extra={"listener_state": "connected"})
                    # Catch up: NOTIFYs sent while we were away are gone, the log is not.
                    for organization_id in list(self.cursors):
                        self._mark(organization_id)
                    await self._listen(conn)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                logger.warning("listener connection lost: %s", exc, extra={"listener_state": "disconnected"})
            except Exception:
                # Anything else is a bug, but a silent stream is worse: log it and listen again.
                logger.exception("listener failed", extra={"listener_state": "disconnected"})
            finally:
                self.connected = False
            self.reconnects += 1
            delay = backoff(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _listen(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        while True:
            quiet = True
            async for notify in conn.notifies(timeout=self.ping_seconds):
                quiet = False
                self._on_notify(notify.payload)
            if quiet:
                # A dead connection shows here in seconds, not at the next TCP timeout.
                await asyncio.wait_for(conn.execute("SELECT 1"), timeout=self.ping_seconds)
            # A NOTIFY is only a wake-up: read every followed organization's log every
            # ping_seconds, so that a wake-up that never came (psycopg < 3.2.4 drops those that
            # arrive between two notifies() calls) costs seconds, not the wait for the next write.
            for organization_id in list(self.cursors):
                self._mark(organization_id)

    def _on_notify(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            organization_id = str(data["org"])
            seq = int(data["seq"])
        except (ValueError, KeyError, TypeError):
            logger.debug("ignoring a foreign notification on %s", CHANNEL)
            return
        self.notifications += 1
        for consumer in self.consumers:
            consumer(organization_id, seq)
        if organization_id in self.cursors or self.has_clients(organization_id):
            self._mark(organization_id)

    # -- the log tail ------------------------------------------------------

    async def run_tail(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Read the log after each dirty organization's cursor and publish, forever."""
        attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for organization_id in dirty:
                if organization_id in self.cursors and not self.has_clients(organization_id):
                    del self.cursors[organization_id]
            todo = {org: self.cursors[org] for org in dirty if org in self.cursors}
            if not todo:
                continue
            try:
                events, more = await self.store.tail(todo)
            except Exception as exc:  # psycopg errors, the pool's PoolTimeout, OSError
                delay = backoff(attempt)
                attempt += 1
                logger.warning("cannot read the event log, retrying in %.1fs: %s", delay, exc)
                for organization_id in todo:
                    self._mark(organization_id)
                await sleep(delay)
                continue
            attempt = 0
            for event in events:
                self.cursors[event.organization_id] = event.seq
            if events:
                self.publish(events)
            for organization_id in more:  # the read stopped at its row or byte bound: read on
                self._mark(organization_id)
