"""One client's view of its organization's events, whatever the transport.

A new client gets a snapshot, a reconnecting one (Last-Event-ID) an exact
replay from the log; both then go live with nothing lost or repeated. The
client is subscribed to the hub *before* the snapshot or replay is read, and
the live events it buffered meanwhile that the snapshot or replay already
covered are dropped (Subscription.start_after). Snapshots are shared by the
clients that join at the same seq (snapshots.py). SSE and WebSocket handlers
only frame what this yields.

A stream ends when its token expires (Principal.expires_at, on the wall clock,
the same moment the token stops being accepted, so a reconnect with it is
refused rather than looping: Hub.expire, every second), and when the hub
closes it (shutdown, a slow client); its last message then says why
(events.StreamEnd).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from pgactivity.auth import Principal
from pgactivity.events import Filters, LogEvent, stream_end
from pgactivity.runtime import Runtime
from pgactivity.store import Gap

logger = logging.getLogger(__name__)

Batch = list[LogEvent | None]  # None: a heartbeat


class ActivitySession:
    """One stream's life: `async with` subscribes (before anything is read) and ends it;
    `opening()` yields the snapshot or the replay; `next_batch()` is the live part, the
    hub's own queue with no layer in between (the hot path of every delivery), ending with
    the message that says why the server ended the stream."""

    __slots__ = ("_ending", "filters", "last_id", "org", "rt", "sub", "transport", "who")

    def __init__(
        self, rt: Runtime, who: Principal, filters: Filters, last_id: int | None, *, transport: str = "sse"
    ) -> None:
        self.rt, self.who, self.filters, self.last_id, self.transport = rt, who, filters, last_id, transport
        self.org = who.organization_id
        self._ending = True

    async def __aenter__(self) -> ActivitySession:
        rt = self.rt
        self.sub = rt.hub.subscribe(self.org, self.filters, expires_at=self.who.expires_at)
        rt.trimmer.joined()
        logger.info(
            "stream opened",
            extra={"organization_id": self.org, "transport": self.transport, "resume": self.last_id is not None},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        rt, sub = self.rt, self.sub
        rt.hub.unsubscribe(sub)
        if not rt.hub.has_clients(self.org):
            rt.snapshots.discard(self.org)
        rt.trimmer.left()
        logger.info(
            "stream closed",
            extra={"organization_id": self.org, "transport": self.transport, "reason": sub.closed or "client"},
        )

    async def opening(self) -> AsyncIterator[Batch]:
        """The snapshot, or with Last-Event-ID the exact replay (or a reset snapshot)."""
        rt, sub, org, filters, last_id = self.rt, self.sub, self.org, self.filters, self.last_id
        await rt.tail.follow(org)
        position: int | None = None
        if last_id is not None and await rt.store.replayable(org, last_id):
            position = last_id
            replayed = 0
            try:
                async for page in rt.store.replay(org, last_id):
                    position = page[-1].seq
                    batch: Batch = [e for e in page if filters.matches(e.session_id, e.agent_type, e.category)]
                    if batch:
                        replayed += len(batch)
                        yield batch
                    if sub.closed is not None:
                        break  # expired or shut down meanwhile: end now, not after the whole replay
            except Gap:
                position = None  # purged under us: fall back to a reset snapshot
            else:
                rt.metrics.replay_done(replayed)
        if position is None and sub.closed is None:
            reset = last_id is not None
            snapshot = await rt.snapshots.get(org, filters, sub.joined_seq, reset=reset)
            position = snapshot.seq
            rt.metrics.snapshot_sent(reset=reset)
            yield [snapshot]
        if position is not None:
            sub.start_after(position)

    async def next_batch(self) -> Batch | None:
        """The next live events (None entries are heartbeats); at the end, once, the end message
        if the server ended the stream; then None."""
        batch = await self.sub.next_batch()
        if batch is not None:
            return batch
        if self._ending and self.sub.closed is not None:
            self._ending = False
            return [stream_end(self.sub.closed)]
        return None


async def activity_session(
    rt: Runtime, who: Principal, filters: Filters, last_id: int | None, *, transport: str = "sse"
) -> AsyncIterator[Batch]:
    """The whole stream as one generator (the WebSocket handler's form)."""
    async with ActivitySession(rt, who, filters, last_id, transport=transport) as session:
        async for batch in session.opening():
            yield batch
        while (live := await session.next_batch()) is not None:
            if live:
                yield live
