"""Retention: delete finished activities and log events older than N days.

`pgactivity purge --older-than DAYS` runs it once; with PGACTIVITY_RETENTION_DAYS
set, `serve` runs it periodically. Either way:

- one process at a time: a session advisory lock (pg_try_advisory_lock) on a
  connection of its own; a process that does not get it skips this round;
- in batches, each its own short transaction, so writers and the stream are
  never held up behind one huge DELETE;
- events are deleted as a prefix of each organization's log (every seq up to
  the newest old one), so the log never has a hole in the middle: a client
  that resumes from a purged seq gets a reset snapshot (store.replayable), and
  one that resumes after it replays exactly;
- agent_activity_counters is never touched: the next seq must stay the next
  seq, or clients holding a Last-Event-ID would skip or repeat events;
- running activities are never deleted, whatever their age.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from pgactivity.db import connect_dedicated

logger = logging.getLogger(__name__)

# pg_try_advisory_lock key: "pgactvty" as a big-endian bigint.
LOCK_KEY = int.from_bytes(b"pgactvty", "big")
BATCH_SIZE = 5000
APPLICATION_NAME = "pgactivity-retention"

SQL_TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
SQL_CUTOFF = "SELECT now() - make_interval(secs => %s)"

# Organizations whose log starts with an old event, and how far the old part goes within
# its first `batch` events: the newest old seq among them. Each organization's log is
# then deleted up to that seq, so what goes is always a prefix, never a hole in the
# middle (created_at follows seq anyway: the trigger stamps it while holding the
# organization's lock, but a clock that steps back must not punch holes). Every read is
# on the log's primary key (organization_id, seq): one probe per organization when
# nothing is old.
SQL_OLD_EVENTS = """
SELECT o.organization_id, (
    SELECT max(e.seq)
    FROM (
        SELECT seq, created_at
        FROM agent_activity_events
        WHERE organization_id = o.organization_id
        ORDER BY seq
        LIMIT %(batch)s
    ) AS e
    WHERE e.created_at < %(cutoff)s
)
FROM agent_activity_counters AS o
WHERE (
    SELECT created_at
    FROM agent_activity_events
    WHERE organization_id = o.organization_id
    ORDER BY seq
    LIMIT 1
) < %(cutoff)s
"""
SQL_PURGE_EVENTS = """
DELETE FROM agent_activity_events
WHERE organization_id = %(org)s AND seq <= %(upto)s
"""

# = ANY (ARRAY(...)): the batch's ids are looked up by primary key, never by a join over the table.
SQL_PURGE_ACTIVITIES = """
DELETE FROM agent_activities
WHERE id = ANY (ARRAY(
    SELECT id
    FROM agent_activities
    WHERE status <> 'running' AND completed_at < %(cutoff)s
    ORDER BY completed_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
))
"""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    activities: int = 0
    events: int = 0
    skipped: bool = False  # another process held the lock

    def counts(self) -> dict[str, int]:
        return {"agent_activities": self.activities, "agent_activity_events": self.events}


async def _purge_events(
    conn: psycopg.AsyncConnection[tuple[object, ...]], cutoff: datetime, batch_size: int, pause: float
) -> int:
    total = 0
    while True:
        cur = await conn.execute(SQL_OLD_EVENTS, {"cutoff": cutoff, "batch": batch_size})
        prefixes = await cur.fetchall()
        if not prefixes:
            return total
        for organization_id, upto in prefixes:
            cur = await conn.execute(SQL_PURGE_EVENTS, {"org": organization_id, "upto": upto})
            total += max(cur.rowcount, 0)
        if pause:
            await asyncio.sleep(pause)


async def _purge_activities(
    conn: psycopg.AsyncConnection[tuple[object, ...]], cutoff: datetime, batch_size: int, pause: float
) -> int:
    total = 0
    while True:
        cur = await conn.execute(SQL_PURGE_ACTIVITIES, {"cutoff": cutoff, "batch": batch_size})
        deleted = max(cur.rowcount, 0)
        total += deleted
        if deleted == 0:
            return total
        if pause:
            await asyncio.sleep(pause)


async def purge(
    conninfo: str, older_than_days: float, *, batch_size: int = BATCH_SIZE, pause: float = 0.0
) -> PurgeResult:
    """Delete finished activities and events older than the given days, unless another process is at it."""
    if not older_than_days > 0:
        raise ValueError("older_than_days must be positive")
    async with await connect_dedicated(conninfo, APPLICATION_NAME) as conn:
        cur = await conn.execute(SQL_TRY_LOCK, (LOCK_KEY,))
        row = await cur.fetchone()
        if not row or not row[0]:
            logger.info("purge skipped: another process is purging")
            return PurgeResult(skipped=True)
        # The lock is the session's: closing this connection releases it, whatever happens.
        cur = await conn.execute(SQL_CUTOFF, (older_than_days * 86400.0,))
        row = await cur.fetchone()
        assert row is not None
        assert isinstance(row[0], datetime)
        cutoff = row[0]
        events = await _purge_events(conn, cutoff, batch_size, pause)
        activities = await _purge_activities(conn, cutoff, batch_size, pause)
    result = PurgeResult(activities=activities, events=events)
    logger.info(
        "purge done",
        extra={"deleted_activities": activities, "deleted_events": events, "older_than_days": older_than_days},
    )
    return result


async def run_periodic(
    conninfo: str,
    older_than_days: float,
    interval_seconds: float,
    on_result: Callable[[PurgeResult], None] | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Purge now, then every interval (±10 %) forever. Database errors are logged and retried next round."""
    while True:
        try:
            result = await purge(conninfo, older_than_days, pause=0.05)
        except (psycopg.Error, OSError) as exc:
            logger.warning("purge failed, retrying in %.0fs: %s", interval_seconds, exc)
        else:
            if on_result is not None:
                on_result(result)
        await sleep(interval_seconds * random.uniform(0.9, 1.1))
