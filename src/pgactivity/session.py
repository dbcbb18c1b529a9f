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


async def activity_session(
    rt: Runtime, who: Principal, filters: Filters, last_id: int | None, *, transport: str = "sse"
) -> AsyncIterator[Batch]:
    org = who.organization_id
    sub = rt.hub.subscribe(org, filters, expires_at=who.expires_at)
    rt.trimmer.joined()
    logger.info("stream opened", extra={"organization_id": org, "transport": transport, "resume": last_id is not None})
    try:
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
        while (live := await sub.next_batch()) is not None:
            if live:
                yield live
        if sub.closed is not None:
            yield [stream_end(sub.closed)]
    finally:
        rt.hub.unsubscribe(sub)
        if not rt.hub.has_clients(org):
            rt.snapshots.discard(org)
        rt.trimmer.left()
        logger.info(
            "stream closed",
            extra={"organization_id": org, "transport": transport, "reason": sub.closed or "client"},
        )
