"""Clients by organization, and the fan-out to them. Knows nothing of SQL or HTTP.

Each client has a bounded buffer. The hub never waits on a client: it appends
the event's bytes (encoded once, shared by every client) and wakes the
client's writer. A client whose backlog (what it was given and has not sent
yet) is over the bound when new events arrive is closed; it resumes with
Last-Event-ID from the log. A batch of the log tail is taken whole by a client
that keeps up, however big, so a burst does not disconnect fast clients; the
writer takes the backlog in chunks of at most WRITE_CHUNK_BYTES, so that
joining them into one write never copies a whole backlog per client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pgactivity.events import HEARTBEAT, Filters, LogEvent

logger = logging.getLogger(__name__)

CLOSED_SLOW = "slow_client"
CLOSED_SHUTDOWN = "shutdown"
CLOSED_EXPIRED = "token_expired"  # the stream's token expired (session.py)
WRITE_CHUNK_BYTES = 256 * 1024


class Subscription:
    """One client's place in the hub: a bounded queue of events (None is a heartbeat)."""

    __slots__ = (
        "_bytes",
        "_queue",
        "_waiter",
        "after",
        "closed",
        "expires_at",
        "filters",
        "joined_seq",
        "max_bytes",
        "max_events",
        "organization_id",
    )

    def __init__(
        self,
        organization_id: str,
        filters: Filters,
        max_bytes: int,
        max_events: int,
        joined_seq: int = -1,
        expires_at: float | None = None,
    ) -> None:
        self.organization_id = organization_id
        self.expires_at = expires_at  # wall clock (time.time()): the stream ends then (Hub.expire)
        self.filters = filters
        self.max_bytes = max_bytes
        self.max_events = max_events
        # The organization's last seq handed to its clients when this one subscribed (-1: none
        # since it got clients): everything after it reaches this client, so a snapshot at a
        # seq >= joined_seq is complete for it (snapshots.py shares them on that condition).
        self.joined_seq = joined_seq
        # Events with seq <= after were already sent (snapshot or replay); None
        # while the snapshot or replay is still being read: keep everything.
        self.after: int | None = None
        self.closed: str | None = None
        self._queue: deque[LogEvent | None] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, event: LogEvent | None) -> bool:
        """Queue one event (None: a heartbeat) without waiting; see offer_many."""
        return self.offer_many((event,))

    def offer_many(self, events: Sequence[LogEvent | None]) -> bool:
        """Queue without waiting. False (and the client closed) when the backlog the client has
        not drained yet is already over the bound: the client does not keep up."""
        if self.closed is not None:
            return False
        if self._bytes > self.max_bytes or len(self._queue) >= self.max_events:
            self.close(CLOSED_SLOW)
            return False
        after = self.after
        for event in events:
            if event is None:
                self._bytes += len(HEARTBEAT)
            elif after is not None and event.seq <= after:
                continue  # the snapshot or replay already covered it
            else:
                self._bytes += len(event.sse)
            self._queue.append(event)
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
        kept = deque(event for event in self._queue if event is None or event.seq > seq)
        if len(kept) != len(self._queue):
            self._queue = kept
            self._bytes = sum(len(HEARTBEAT) if event is None else len(event.sse) for event in kept)

    async def next_batch(self) -> list[LogEvent | None] | None:
        """The oldest queued events, up to WRITE_CHUNK_BYTES (at least one; None entries are
        heartbeats); None once the subscription is closed."""
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
        queue = self._queue
        batch: list[LogEvent | None] = []
        taken = 0
        while queue and (not batch or taken + _size(queue[0]) <= WRITE_CHUNK_BYTES):
            event = queue.popleft()
            taken += _size(event)
            batch.append(event)
        self._bytes -= taken
        return batch


def _size(event: LogEvent | None) -> int:
    return len(HEARTBEAT) if event is None else len(event.sse)


@dataclass
class HubStats:
    delivered: int = 0
    slow_disconnects: int = 0


class Hub:
    def __init__(self, *, max_bytes: int, max_events: int) -> None:
        self.max_bytes = max_bytes
        self.max_events = max_events
        self._clients: dict[str, set[Subscription]] = {}
        self._last_seq: dict[str, int] = {}  # per organization with clients: the last seq handed out
        self.streams = 0  # subscriptions, all organizations
        self.stats = HubStats()
        self.closing = False

    def subscribe(self, organization_id: str, filters: Filters, *, expires_at: float | None = None) -> Subscription:
        joined = self._last_seq.get(organization_id, -1)
        sub = Subscription(organization_id, filters, self.max_bytes, self.max_events, joined, expires_at)
        if self.closing:
            sub.close(CLOSED_SHUTDOWN)
            return sub
        self._clients.setdefault(organization_id, set()).add(sub)
        self.streams += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        clients = self._clients.get(sub.organization_id)
        if clients is not None and sub in clients:
            clients.discard(sub)
            self.streams -= 1
            if not clients:
                del self._clients[sub.organization_id]
                self._last_seq.pop(sub.organization_id, None)

    def organizations(self) -> list[str]:
        return list(self._clients)

    def has_clients(self, organization_id: str) -> bool:
        return organization_id in self._clients

    def client_counts(self) -> dict[str, int]:
        return {org: len(subs) for org, subs in self._clients.items()}

    def publish(self, events: Iterable[LogEvent]) -> None:
        """Hand events (in seq order per organization) to that organization's clients."""
        by_org: dict[str, list[LogEvent]] = {}
        for event in events:
            if event.organization_id in self._clients:
                by_org.setdefault(event.organization_id, []).append(event)
        for organization_id, batch in by_org.items():
            self._last_seq[organization_id] = batch[-1].seq
            slow: list[Subscription] = []
            for sub in self._clients.get(organization_id, ()):
                filters = sub.filters
                mine = (
                    batch
                    if filters.empty
                    else [e for e in batch if filters.matches(e.session_id, e.agent_type, e.category)]
                )
                if not mine:
                    continue
                if sub.offer_many(mine):
                    self.stats.delivered += len(mine)
                else:
                    slow.append(sub)
            self._drop_slow(slow)

    def _drop_slow(self, slow: list[Subscription]) -> None:
        for sub in slow:
            self.stats.slow_disconnects += 1
            logger.warning(
                "client too slow, disconnected",
                extra={"organization_id": sub.organization_id, "buffer_bytes": sub.max_bytes},
            )
            self.unsubscribe(sub)

    def expire(self, now: float) -> int:
        """End every stream whose token has expired by `now` (the wall clock); one pass over the
        clients, run every second, instead of a timer per stream. Returns how many ended."""
        gone = [
            sub
            for clients in self._clients.values()
            for sub in clients
            if sub.expires_at is not None and sub.expires_at <= now
        ]
        for sub in gone:
            sub.close(CLOSED_EXPIRED)
            self.unsubscribe(sub)  # at once: a closed subscription in the hub would count as slow
        return len(gone)

    def heartbeat(self) -> None:
        slow = [sub for clients in self._clients.values() for sub in clients if not sub.offer(None)]
        self._drop_slow(slow)

    def close_all(self, reason: str = CLOSED_SHUTDOWN) -> None:
        self.closing = True
        for clients in list(self._clients.values()):
            for sub in list(clients):
                sub.close(reason)
        self._clients.clear()
        self._last_seq.clear()
        self.streams = 0
