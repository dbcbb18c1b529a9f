"""The reads the streamer makes: snapshots, replays and the live log tail.

Everything here takes an async pool; SQL is parameterised and kept as constants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from psycopg import IsolationLevel
from psycopg_pool import AsyncConnectionPool

from pgactivity.events import Filters, LogEvent, snapshot_json

SQL_LAST_SEQ = """
SELECT coalesce((SELECT last_seq FROM agent_activity_counters WHERE organization_id = %s), 0)
"""
SQL_LAST_SEQS = """
SELECT c.org, coalesce(ac.last_seq, 0)
FROM unnest(%s::text[]) AS c(org)
LEFT JOIN agent_activity_counters AS ac ON ac.organization_id = c.org
"""
SQL_MIN_SEQ = "SELECT min(seq) FROM agent_activity_events WHERE organization_id = %s"

# The live tail of several organizations in one round trip, LIMIT per organization.
SQL_TAIL = """
SELECT e.organization_id, e.seq, e.payload->>'sessionId', e.payload->>'agentType',
       e.payload->>'category', e.payload::text, extract(epoch FROM e.created_at)::float8
FROM unnest(%s::text[], %s::bigint[]) AS c(org, after)
CROSS JOIN LATERAL (
    SELECT organization_id, seq, payload, created_at
    FROM agent_activity_events
    WHERE organization_id = c.org AND seq > c.after
    ORDER BY seq
    LIMIT %s
) AS e
ORDER BY e.organization_id, e.seq
"""
SQL_REPLAY = """
SELECT organization_id, seq, payload->>'sessionId', payload->>'agentType', payload->>'category', payload::text
FROM agent_activity_events
WHERE organization_id = %s AND seq > %s
ORDER BY seq
LIMIT %s
"""
SQL_SNAPSHOT = """
SELECT agent_activity_json(a)::text
FROM agent_activities AS a
WHERE a.organization_id = %(org)s
  AND (%(session_id)s::text IS NULL OR a.session_id = %(session_id)s)
  AND (%(agent_type)s::text IS NULL OR a.agent_type = %(agent_type)s)
  AND (%(category)s::text IS NULL OR a.category = %(category)s)
ORDER BY a.created_at DESC, a.id DESC
LIMIT %(limit)s
"""

TAIL_BATCH = 200
REPLAY_PAGE = 200


class Gap(Exception):
    """The log lost rows under a replay (purged meanwhile): the client needs a reset."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    json: str


class Store:
    def __init__(self, pool: AsyncConnectionPool, *, tail_pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool
        # The live tail reads on every NOTIFY: its own connection never waits behind snapshots or searches.
        self.tail_pool = tail_pool if tail_pool is not None else pool

    async def last_seqs(self, organization_ids: Sequence[str]) -> dict[str, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(SQL_LAST_SEQS, (list(organization_ids),))
            return {str(org): int(seq) for org, seq in await cur.fetchall()}

    async def tail(self, cursors: dict[str, int]) -> list[LogEvent]:
        """Events after each organization's cursor, at most TAIL_BATCH per organization."""
        orgs = list(cursors)
        async with self.tail_pool.connection() as conn:
            cur = await conn.execute(SQL_TAIL, (orgs, [cursors[o] for o in orgs], TAIL_BATCH))
            return [LogEvent.from_row(*row) for row in await cur.fetchall()]

    async def snapshot(self, organization_id: str, filters: Filters, limit: int, *, reset: bool) -> Snapshot:
        """The newest activities and the seq they are current at, read in one snapshot."""
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
                        },
                    )
                    activities = [r[0] for r in await cur.fetchall()]
            finally:
                await conn.set_isolation_level(None)
                await conn.set_read_only(None)
        return Snapshot(seq, snapshot_json(organization_id, seq, activities, reset=reset))

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
        """Pages of events with seq > after up to the end of the log; raises Gap on a hole."""
        position = after
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(SQL_REPLAY, (organization_id, position, REPLAY_PAGE))
                page = [LogEvent.from_row(*row) for row in await cur.fetchall()]
            for event in page:
                if event.seq != position + 1:
                    raise Gap(f"expected seq {position + 1}, log has {event.seq}")
                position = event.seq
            if page:
                yield page
            if len(page) < REPLAY_PAGE:
                return
