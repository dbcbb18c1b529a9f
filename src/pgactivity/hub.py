"""Clients by organization, and the fan-out to them. Knows nothing of SQL or HTTP.

Each client has a bounded buffer. The hub never waits on a client: it appends
the event's bytes (encoded once, shared by every client) and wakes the
client's writer. A client whose buffer is full is closed; it resumes with
Last-Event-ID from the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from pgactivity.events import HEARTBEAT, Filters, LogEvent

logger = logging.getLogger(__name__)

CLOSED_SLOW = "slow_client"
CLOSED_SHUTDOWN = "shutdown"


class Subscription:
    """One client's place in the hub: a bounded queue of events (None is a heartbeat)."""

    __slots__ = (
        "_bytes",
        "_queue",
        "_waiter",
        "after",
        "closed",
        "filters",
        "max_bytes",
        "max_events",
        "organization_id",
    )

    def __init__(self, organization_id: str, filters: Filters, max_bytes: int, max_events: int) -> None:
        self.organization_id = organization_id
        self.filters = filters
        self.max_bytes = max_bytes
        self.max_events = max_events
        # Events with seq <= after were already sent (snapshot or replay); None
        # while the snapshot or replay is still being read: keep everything.
        self.after: int | None = None
        self.closed: str | None = None
        self._queue: deque[LogEvent | None] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, event: LogEvent | None) -> bool:
        """Queue without waiting. False (and the client closed) when the buffer is full."""
        if self.closed is not None:
            return False
        size = len(event.sse) if event is not None else len(HEARTBEAT)
        if self._queue and (self._bytes + size > self.max_bytes or len(self._queue) >= self.max_events):
            self.close(CLOSED_SLOW)
            return False
        self._queue.append(event)
        self._bytes += size
        self._wake()
        return True

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
            self._queue.clear()
            self._bytes = 0
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def start_after(self, seq: int) -> None:
        """The snapshot or replay covered everything up to seq: drop those from the buffer."""
        self.after = seq

    async def next_batch(self) -> list[LogEvent | None] | None:
        """Everything queued (None entries are heartbeats); None once the subscription is closed."""
        while not self._queue:
            if self.closed is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed is not None:
            return None
        after = self.after if self.after is not None else -1
        batch = [event for event in self._queue if event is None or event.seq > after]
        self._queue.clear()
        self._bytes = 0
        return batch


@dataclass
class HubStats:
    delivered: int = 0
    slow_disconnects: int = 0


class Hub:
    def __init__(self, *, max_bytes: int, max_events: int) -> None:
        self.max_bytes = max_bytes
        self.max_events = max_events
        self._clients: dict[str, set[Subscription]] = {}
        self.stats = HubStats()
        self.closing = False

    def subscribe(self, organization_id: str, filters: Filters) -> Subscription:
        sub = Subscription(organization_id, filters, self.max_bytes, self.max_events)
        if self.closing:
            sub.close(CLOSED_SHUTDOWN)
            return sub
        self._clients.setdefault(organization_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        clients = self._clients.get(sub.organization_id)
        if clients is not None:
            clients.discard(sub)
            if not clients:
                del self._clients[sub.organization_id]

    def organizations(self) -> list[str]:
        return list(self._clients)

    def has_clients(self, organization_id: str) -> bool:
        return organization_id in self._clients

    def client_counts(self) -> dict[str, int]:
        return {org: len(subs) for org, subs in self._clients.items()}

    def publish(self, events: Iterable[LogEvent]) -> None:
        """Hand events (in seq order per organization) to that organization's clients."""
        for event in events:
            clients = self._clients.get(event.organization_id)
            if not clients:
                continue
            slow: list[Subscription] = []
            for sub in clients:
                if sub.filters.empty or sub.filters.matches(event.session_id, event.agent_type, event.category):
                    if sub.offer(event):
                        self.stats.delivered += 1
                    else:
                        slow.append(sub)
            for sub in slow:
                self.stats.slow_disconnects += 1
                logger.warning(
                    "client too slow, disconnected",
                    extra={"organization_id": sub.organization_id, "buffer_bytes": sub.max_bytes},
                )
                self.unsubscribe(sub)

    def heartbeat(self) -> None:
        for clients in list(self._clients.values()):
            for sub in list(clients):
                if not sub.offer(None):
                    self.unsubscribe(sub)

    def close_all(self, reason: str = CLOSED_SHUTDOWN) -> None:
        self.closing = True
        for clients in list(self._clients.values()):
            for sub in list(clients):
                sub.close(reason)
        self._clients.clear()
