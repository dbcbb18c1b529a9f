"""The reads the streamer makes: snapshots, replays and the live log tail.

Everything here takes an async pool; SQL is parameterised and kept as constants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, IsolationLevel
from psycopg_pool import AsyncConnectionPool

from pgactivity.events import Filters, LogEvent

SQL_LAST_SEQ = """
SELECT coalesce((SELECT last_seq FROM agent_activity_counters WHERE organization_id = %s), 0)
"""
SQL_LAST_SEQS = """
SELECT c.org, coalesce(ac.last_seq, 0)
FROM unnest(%s::text[]) AS c(org)
LEFT JOIN agent_activity_counters AS ac ON ac.organization_id = c.org
"""
SQL_MIN_SEQ = "SELECT min(seq) FROM agent_activity_events WHERE organization_id = %s"

# The live tail of several organizations in one round trip: per organization at most LIMIT
# events and about a byte budget (at least one event). `body` is formatted once; rows past the
# budget are dropped before they are sent.
SQL_TAIL = """
SELECT e.organization_id, e.seq, e.payload->>'sessionId', e.payload->>'agentType',
       e.payload->>'category', e.body, e.committed_at
FROM unnest(%s::text[], %s::bigint[]) AS c(org, after)
CROSS JOIN LATERAL (
    SELECT organization_id, seq, payload, body, committed_at,
           sum(octet_length(body)) OVER (ORDER BY seq) - octet_length(body) AS before
    FROM (
        SELECT organization_id, seq, payload, payload::text AS body,
               extract(epoch FROM created_at)::float8 AS committed_at
        FROM agent_activity_events
        WHERE organization_id = c.org AND seq > c.after
        ORDER BY seq
        LIMIT %s
    ) AS t
) AS e
WHERE e.before < %s
ORDER BY e.organization_id, e.seq
"""
# The same for one organization, the usual case at a steady rate: no unnest and no sort, and
# about 0.1 ms less per NOTIFY.
SQL_TAIL_ONE = """
SELECT organization_id, seq, payload->>'sessionId', payload->>'agentType',
       payload->>'category', body, committed_at
FROM (
    SELECT organization_id, seq, payload, body, committed_at,
           sum(octet_length(body)) OVER (ORDER BY seq) - octet_length(body) AS before
    FROM (
        SELECT organization_id, seq, payload, payload::text AS body,
               extract(epoch FROM created_at)::float8 AS committed_at
        FROM agent_activity_events
        WHERE organization_id = %s AND seq > %s
        ORDER BY seq
        LIMIT %s
    ) AS t
) AS e
WHERE before < %s
ORDER BY seq
"""
# A page of the replay: at most LIMIT events up to a seq, and about a byte budget (at least one
# event). `body` is formatted once; rows past the budget are dropped before they are sent.
SQL_REPLAY = """
SELECT organization_id, seq, session_id, agent_type, category, body
FROM (
    SELECT organization_id, seq, payload->>'sessionId' AS session_id, payload->>'agentType' AS agent_type,
           payload->>'category' AS category, body,
           sum(octet_length(body)) OVER (ORDER BY seq) - octet_length(body) AS before
    FROM (
        SELECT organization_id, seq, payload, payload::text AS body
        FROM agent_activity_events
        WHERE organization_id = %s AND seq > %s AND seq <= %s
        ORDER BY seq
        LIMIT %s
    ) AS page
) AS sized
WHERE before < %s
ORDER BY seq
"""
# The newest activities, each in its slim form (large fields over SLIM_FIELD_BYTES cut and
# named in "truncated", see agent_activity_json_slim) with the size of its whole JSON when
# something was cut: NULL when one field alone is over the budget (it cannot fit, and is
# not serialized to find out).
SQL_EVENT = """
SELECT organization_id, seq, payload->>'sessionId', payload->>'agentType', payload->>'category', payload::text,
       extract(epoch FROM created_at)::float8
FROM agent_activity_events
WHERE organization_id = %s AND seq = %s
"""
SQL_SNAPSHOT = """
SELECT a.id, s.slim::text, CASE WHEN s.slim ? 'truncated' THEN
           CASE WHEN greatest(pg_column_size(a.input_data), pg_column_size(a.output_data),
                              pg_column_size(a.metadata), pg_column_size(a.message),
                              pg_column_size(a.error)) <= %(budget)s
                THEN octet_length(agent_activity_json(a)::text) END END
FROM agent_activities AS a
CROSS JOIN LATERAL (SELECT agent_activity_json_slim(a, %(field_bytes)s) AS slim) AS s
WHERE a.organization_id = %(org)s
  AND (%(session_id)s::text IS NULL OR a.session_id = %(session_id)s)
  AND (%(agent_type)s::text IS NULL OR a.agent_type = %(agent_type)s)
  AND (%(category)s::text IS NULL OR a.category = %(category)s)
ORDER BY a.created_at DESC, a.id DESC
LIMIT %(limit)s
"""
# The whole JSON of the activities that fit the budget after all.
SQL_ACTIVITIES_WHOLE = """
SELECT a.id, agent_activity_json(a)::text FROM agent_activities AS a WHERE a.id = ANY(%s)
"""

TAIL_BATCH = 200
# The log tail holds one read in memory: bound it in bytes too (a burst of large events).
TAIL_BYTES = 4 * 1024 * 1024
REPLAY_PAGE = 200
# A reconnecting client holds one replay page at a time: bound it in bytes too (large events).
REPLAY_PAGE_BYTES = 1024 * 1024
REPLAY_FIRST_PAGE = 50
# A snapshot (or a search page) carries at most about this many bytes of activities: past it,
# activities go in their slim form. Fields over SLIM_FIELD_BYTES are what the slim form cuts.
SNAPSHOT_BYTES = 1024 * 1024
SLIM_FIELD_BYTES = 256


class Gap(Exception):
    """The log lost rows under a replay (purged meanwhile): the client needs a reset."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An organization's newest activities (JSON objects as PostgreSQL wrote them) as of seq."""

    organization_id: str
    seq: int
    activities: list[str]

    @property
    def size(self) -> int:
        return sum(len(a) for a in self.activities)


async def fit(conn: AsyncConnection[Any], rows: Sequence[tuple[Any, ...]], budget: int) -> list[str]:
    """The activities of rows (id, slim JSON, whole size or None), newest first, within about
    `budget` bytes: each in its whole form while that fits, else in its slim form (whose large
    fields are null and named in "truncated"). Only the whole ones that fit are read.

    Run in the transaction that read the rows, so that both reads see one snapshot."""
    used = 0
    whole: list[Any] = []
    for activity_id, slim, size in rows:
        if size is not None and used + size <= budget:
            whole.append(activity_id)
            used += size
        else:
            used += len(slim)
    if not whole:
        return [str(r[1]) for r in rows]
    cur = await conn.execute(SQL_ACTIVITIES_WHOLE, (whole,))
    found = {activity_id: text for activity_id, text in await cur.fetchall()}
    return [str(found.get(r[0], r[1])) for r in rows]


class Store:
    def __init__(self, pool: AsyncConnectionPool, *, tail_pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool
        # The live tail reads on every NOTIFY: its own connection never waits behind snapshots or searches.
        self.tail_pool = tail_pool if tail_pool is not None else pool
        # Events per organization in the next tail read, sized from the events seen, so that
        # PostgreSQL rarely formats rows the byte budget then drops.
        self.tail_limit = TAIL_BATCH

    async def last_seqs(self, organization_ids: Sequence[str]) -> dict[str, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(SQL_LAST_SEQS, (list(organization_ids),))
            return {str(org): int(seq) for org, seq in await cur.fetchall()}

    async def tail(self, cursors: dict[str, int]) -> tuple[list[LogEvent], set[str]]:
        """Events after each organization's cursor, at most `tail_limit` events and about
        TAIL_BYTES per organization; and the organizations whose read may have stopped short."""
        orgs = list(cursors)
        limit = self.tail_limit
        async with self.tail_pool.connection() as conn:
            if len(orgs) == 1:
                cur = await conn.execute(SQL_TAIL_ONE, (orgs[0], cursors[orgs[0]], limit, TAIL_BYTES))
            else:
                cur = await conn.execute(SQL_TAIL, (orgs, [cursors[o] for o in orgs], limit, TAIL_BYTES))
            events = [LogEvent.from_row(*row) for row in await cur.fetchall()]
        counts: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for event in events:
            counts[event.organization_id] = counts.get(event.organization_id, 0) + 1
            # The SSE frame holds the payload's bytes: a sum at the budget means the read may have stopped there.
            sizes[event.organization_id] = sizes.get(event.organization_id, 0) + len(event.sse)
        if events:
            largest = max(sizes[org] / counts[org] for org in counts)
            self.tail_limit = max(1, min(TAIL_BATCH, int(TAIL_BYTES // largest) + 1))
        more = {org for org, count in counts.items() if count >= limit or sizes[org] >= TAIL_BYTES}
        return events, more

    async def event(self, organization_id: str, seq: int) -> LogEvent | None:
        """One event of the log (the broker relay publishes large events whole)."""
        async with self.tail_pool.connection() as conn:
            cur = await conn.execute(SQL_EVENT, (organization_id, seq))
            row = await cur.fetchone()
        return LogEvent.from_row(*row) if row else None

    async def snapshot(
        self, organization_id: str, filters: Filters, limit: int, *, budget: int = SNAPSHOT_BYTES
    ) -> Snapshot:
        """The newest activities and the seq they are current at, read in one snapshot; about
        `budget` bytes at most (see `fit`)."""
        async with self.pool.connection() as conn:
            await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
            await conn.set_read_only(True)
            try:
                async with conn.transaction():
                    cur = await conn.execute(SQL_LAST_SEQ, (organization_id,))
                    row = await cur.fetchone()
                    seq = int(row[0]) if row else 0
                    cur = await conn.execute(
                        SQL_SNAPSHOT,
                        {
                            "org": organization_id,
                            "session_id": filters.session_id,
                            "agent_type": filters.agent_type,
                            "category": filters.category,
                            "limit": limit,
                            "budget": budget,
                            "field_bytes": SLIM_FIELD_BYTES,
                        },
                    )
                    activities = await fit(conn, await cur.fetchall(), budget)
            finally:
                await conn.set_isolation_level(None)
                await conn.set_read_only(None)
        return Snapshot(organization_id, seq, activities)

    async def replayable(self, organization_id: str, after: int) -> bool:
        """Can every event with seq > after still be read from the log?"""
        async with self.pool.connection() as conn:
            cur = await conn.execute(SQL_LAST_SEQ, (organization_id,))
            row = await cur.fetchone()
            last = int(row[0]) if row else 0
            if after > last:
                return False  # from the future: another database, or a reset log
            if after == last:
                return True
            cur = await conn.execute(SQL_MIN_SEQ, (organization_id,))
            row = await cur.fetchone()
            first = row[0] if row else None
            return first is not None and int(first) <= after + 1

    async def replay(self, organization_id: str, after: int) -> AsyncIterator[list[LogEvent]]:
        """Pages of events with seq > after, up to the end of the log as the replay starts (what
        comes later reaches the client live); raises Gap on a hole. A page holds at most
        REPLAY_PAGE events and about REPLAY_PAGE_BYTES (at least one event)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(SQL_LAST_SEQ, (organization_id,))
            row = await cur.fetchone()
        until = int(row[0]) if row else 0
        position = after
        limit = REPLAY_FIRST_PAGE
        while position < until:
            async with self.pool.connection() as conn:
                cur = await conn.execute(SQL_REPLAY, (organization_id, position, until, limit, REPLAY_PAGE_BYTES))
                page = [LogEvent.from_row(*row) for row in await cur.fetchall()]
            if not page:
                raise Gap(f"expected seq {position + 1}, the log has none")
            size = 0
            for event in page:
                if event.seq != position + 1:
                    raise Gap(f"expected seq {position + 1}, log has {event.seq}")
                position = event.seq
                size += len(event.json)
            yield page
            # Size the next page from this one, so that PostgreSQL rarely formats rows the budget drops.
            limit = max(1, min(REPLAY_PAGE, REPLAY_PAGE_BYTES * len(page) // max(size, 1) + 1))
