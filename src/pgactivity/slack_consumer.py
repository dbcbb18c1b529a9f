"""The Slack consumer: one message per activity, exactly once across processes and restarts.

It reads the same event log as the stream (agent_activity_events) and is woken
by the process's one LISTEN connection (it subscribes to the `Listener` as a
handler); it never opens a second LISTEN. Its state is in the database (sql/migrations/*_slack.sql):

1. Ingest. For each organization with new events, one short transaction locks
   the organization's cursor row (`agent_activity_slack_cursors ... FOR
   UPDATE`), reads the events after it, creates a message row per
   `agent_started` and raises `wanted_seq` of the activity's row for the other
   events, and moves the cursor. Cursor and rows commit together, so every event
   is taken exactly once, by one process, whatever crashes.
2. Deliver. Rows whose Slack message is missing or behind (`ts IS NULL OR
   sent_seq < wanted_seq`) are worked one at a time under a session advisory lock
   per activity, held on this consumer's own connection (a crash releases it).
   The row is read again under the lock, the message shows the activity as it is
   now (latest state wins), and updates of one message are at least
   `update_seconds` apart (`sent_at`), across processes.
3. The lost answer. Before chat.postMessage the row gets `post_started_at`
   (committed); after it, `ts`. A crash in between, or a post whose answer did
   not come in time, leaves `post_started_at` without `ts`: the next attempt,
   in this process as in any other, waits until no post can still be in flight
   (every call is cut at a deadline; `grace` is a little more), then looks for
   the message in the channel's history by its metadata (the activity id) and
   adopts it, and only posts if it is not there. (Slack may store a message
   after the call that sent it has given up: looking before the grace period
   would miss it and post a second one.) Without the channel-history scope it
   posts again and logs that this may duplicate: the one case where a second
   message can appear.
4. Errors, sorted by slack.py: a message Slack can never take is marked
   `rejected`; a workspace or token that cannot post (auth, channel, rate
   limits, Slack down) pauses the whole consumer and is retried later; an
   error nobody knows is retried for that message with backoff, at most
   `max_attempts` times, then the message is marked `rejected`. A row the
   consumer itself cannot handle (data it cannot read or render) is logged,
   counted and marked at once. So one organization's odd row never stops the
   messages of another.

Slack trouble never touches the stream: this runs as its own task on its own
connection, the wake-up callback is O(1) and its queue (organizations to read)
is bounded; Slack errors pause this consumer only and are reported in /readyz.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgactivity import jsondepth
from pgactivity.backoff import backoff
from pgactivity.db import connect_dedicated
from pgactivity.listener import Notification
from pgactivity.settings import Settings
from pgactivity.slack import (
    ActivityView,
    MessageRef,
    SlackActivityService,
    SlackMisconfigured,
    SlackRejected,
    SlackSdkService,
    SlackUnavailable,
    SlackUnknownError,
    deadline_for,
    error_code,
    render,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

APPLICATION_NAME = "pgactivity-slack"
INGEST_BATCH = 500
PENDING_BATCH = 100
MAX_DIRTY = 10_000
SWEEP_SECONDS = 10.0
MISCONFIGURED_PAUSE = 60.0
LOCK_PREFIX = "pgactivity.slack:"

SQL_START = """
INSERT INTO agent_activity_slack_consumer (start_from) VALUES (%s)
ON CONFLICT (id) DO NOTHING
RETURNING started_at
"""
# First run: organizations that already have events start at their end (or beginning).
SQL_INIT_CURSORS = """
INSERT INTO agent_activity_slack_cursors (organization_id, last_seq)
SELECT organization_id, CASE WHEN %(beginning)s THEN 0 ELSE last_seq END
FROM agent_activity_counters
ON CONFLICT (organization_id) DO NOTHING
"""
SQL_BEHIND = """
SELECT c.organization_id
FROM agent_activity_counters AS c
LEFT JOIN agent_activity_slack_cursors AS s USING (organization_id)
WHERE c.last_seq > coalesce(s.last_seq, 0)
"""
# An organization without a cursor after the first run is new: it starts at 0.
SQL_CURSOR_CREATE = """
INSERT INTO agent_activity_slack_cursors (organization_id, last_seq) VALUES (%s, 0)
ON CONFLICT (organization_id) DO NOTHING
"""
SQL_CURSOR_LOCK = "SELECT last_seq FROM agent_activity_slack_cursors WHERE organization_id = %s FOR UPDATE"
# Runs after the cursor lock, so its snapshot sees every row an earlier ingest committed.
SQL_INGEST = """
WITH batch AS (
    SELECT seq, activity_id, type
    FROM agent_activity_events
    WHERE organization_id = %(org)s AND seq > %(after)s
    ORDER BY seq
    LIMIT %(limit)s
), per_activity AS (
    SELECT activity_id,
           min(seq) FILTER (WHERE type = 'agent_started') AS started_seq,
           max(seq) AS last_seq
    FROM batch
    GROUP BY activity_id
), started AS (
    INSERT INTO agent_activity_slack_messages AS m (activity_id, organization_id, channel, started_seq, wanted_seq)
    SELECT p.activity_id, %(org)s, %(channel)s, p.started_seq, p.last_seq
    FROM per_activity AS p
    JOIN agent_activities AS a ON a.id = p.activity_id
    WHERE p.started_seq IS NOT NULL
    ON CONFLICT (activity_id) DO UPDATE SET wanted_seq = greatest(m.wanted_seq, excluded.wanted_seq)
), progressed AS (
    UPDATE agent_activity_slack_messages AS m
    SET wanted_seq = greatest(m.wanted_seq, p.last_seq)
    FROM per_activity AS p
    WHERE m.activity_id = p.activity_id AND p.started_seq IS NULL
)
UPDATE agent_activity_slack_cursors AS c
SET last_seq = b.max_seq, updated_at = now()
FROM (SELECT max(seq) AS max_seq, count(*) AS n FROM batch) AS b
WHERE c.organization_id = %(org)s AND b.max_seq IS NOT NULL
RETURNING b.n
"""
# The work list, soonest first; `wait` is how long until a row may be worked on.
SQL_PENDING = """
SELECT m.activity_id::text,
       extract(epoch FROM greatest(
           now(),
           CASE WHEN m.ts IS NOT NULL THEN m.sent_at + make_interval(secs => %(interval)s) END,
           m.retry_at,
           CASE WHEN m.ts IS NULL THEN m.post_started_at + make_interval(secs => %(grace)s) END
       ) - now())::float8 AS wait
FROM agent_activity_slack_messages AS m
WHERE m.state = 'active' AND (m.ts IS NULL OR m.sent_seq < m.wanted_seq)
ORDER BY wait, m.created_at
LIMIT %(limit)s
"""
SQL_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
SQL_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended(%s, 0))"
SQL_ROW = """
SELECT m.ts, m.channel, m.state, m.wanted_seq, m.sent_seq, m.sent_hash, m.post_started_at,
       m.post_started_at + make_interval(secs => %(grace)s) <= now() AS post_settled,
       (m.ts IS NULL OR m.sent_at IS NULL OR m.sent_at + make_interval(secs => %(interval)s) <= now())
           AND (m.retry_at IS NULL OR m.retry_at <= now()) AS due,
       agent_activity_json(a)::text
FROM agent_activity_slack_messages AS m
JOIN agent_activities AS a ON a.id = m.activity_id
WHERE m.activity_id = %(id)s
"""
SQL_POST_STARTED = """
UPDATE agent_activity_slack_messages
SET post_started_at = now(), post_started_by = %(me)s, channel = %(channel)s
WHERE activity_id = %(id)s
"""
SQL_POST_CLEAR = """
UPDATE agent_activity_slack_messages SET post_started_at = NULL, post_started_by = NULL
WHERE activity_id = %(id)s AND ts IS NULL
"""
SQL_POSTED = """
UPDATE agent_activity_slack_messages
SET ts = %(ts)s, channel = %(channel)s, sent_seq = %(sent_seq)s, sent_hash = %(hash)s, sent_at = now(),
    post_started_at = NULL, post_started_by = NULL, attempts = 0, retry_at = NULL, error = NULL
WHERE activity_id = %(id)s AND ts IS NULL
RETURNING 1
"""
SQL_SENT = """
UPDATE agent_activity_slack_messages
SET sent_seq = greatest(sent_seq, %(sent_seq)s), sent_hash = %(hash)s, sent_at = now(),
    attempts = 0, retry_at = NULL, error = NULL
WHERE activity_id = %(id)s
"""
SQL_UNCHANGED = """
UPDATE agent_activity_slack_messages SET sent_seq = greatest(sent_seq, %(sent_seq)s)
WHERE activity_id = %(id)s
"""
# Slack or the workspace could not take it (the whole consumer pauses): not this message's attempt.
SQL_FAILED = """
UPDATE agent_activity_slack_messages
SET retry_at = now() + make_interval(secs => %(delay)s), error = %(error)s
WHERE activity_id = %(id)s
"""
# An unknown error: one more of this message's bounded attempts, the next one after a backoff.
SQL_ATTEMPT_FAILED = """
UPDATE agent_activity_slack_messages
SET attempts = attempts + 1,
    retry_at = now() + make_interval(secs => least(%(cap)s, %(base)s * power(2, least(attempts, 30)))),
    error = %(error)s
WHERE activity_id = %(id)s
RETURNING attempts
"""
SQL_REJECTED = """
UPDATE agent_activity_slack_messages
SET state = 'rejected', error = %(error)s, post_started_at = NULL, post_started_by = NULL
WHERE activity_id = %(id)s
"""

# What one delivery did.
LOCKED, IDLE, DONE, FAILED = "locked", "idle", "done", "failed"
# Why a message was given up (the `reason` label of pgactivity_slack_messages_rejected_total).
REFUSED, ATTEMPTS, UNHANDLED = "refused", "attempts", "unhandled"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SlackConsumer:
    """Runs as the `slack` task of a server process; see the module docstring."""

    def __init__(
        self,
        conninfo: str,
        channel: str,
        service: SlackActivityService,
        *,
        start_from: str = "end",
        update_seconds: float = 1.0,
        timeout_seconds: float = 10.0,
        retry_max_seconds: float = 60.0,
        max_attempts: int = 8,
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.service = service
        self.start_from = start_from
        self.update_seconds = update_seconds
        # Every service call is cut at `deadline`; a post older than `grace` is no longer in flight.
        self.deadline = deadline_for(timeout_seconds)
        self.grace = self.deadline + 2.0
        self.retry_max_seconds = retry_max_seconds
        self.max_attempts = max_attempts
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.status = "starting"
        self.posted = 0
        self.updated = 0
        self.recovered = 0
        self.errors = 0
        self.rejected: dict[str, int] = {REFUSED: 0, ATTEMPTS: 0, UNHANDLED: 0}
        self._failures = 0
        self._db_attempt = 0
        self._pause_until = 0.0
        self._dirty: set[str] = set()
        self._rescan = True
        self._next_sweep = 0.0
        self._wake = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings, service: SlackActivityService | None = None) -> SlackConsumer:
        assert settings.database_url
        assert settings.slack_bot_token
        assert settings.slack_channel
        if service is None:
            service = SlackSdkService(
                settings.slack_bot_token,
                settings.slack_channel,
                base_url=settings.slack_base_url,
                timeout=settings.slack_timeout_seconds,
            )
        return cls(
            settings.database_url,
            settings.slack_channel,
            service,
            start_from=settings.slack_start,
            update_seconds=settings.slack_update_seconds,
            timeout_seconds=settings.slack_timeout_seconds,
            retry_max_seconds=settings.slack_retry_max_seconds,
            max_attempts=settings.slack_max_attempts,
        )

    # -- wake-ups (a listener Handler: called on every NOTIFY, must stay O(1)) ----------

    def on_notification(self, note: Notification) -> None:
        if len(self._dirty) < MAX_DIRTY:
            self._dirty.add(note.organization_id)
        else:
            self._rescan = True  # queue full: forget names, look for work in the database instead
        self._wake.set()

    def on_resync(self) -> None:
        """The LISTEN connection was (re)made: NOTIFYs may have been missed, look in the database."""
        self._rescan = True
        self._wake.set()

    # -- the task ------------------------------------------------------------------

    async def run(self) -> None:
        """Forever; never raises but CancelledError (a dead task would fail /readyz)."""
        try:
            await self._authenticate()
            while True:
                try:
                    await self._consume()
                except SlackMisconfigured as exc:
                    self._misconfigured(exc)
                    await asyncio.sleep(MISCONFIGURED_PAUSE)
                    await self._authenticate()
                except Exception as exc:  # database trouble (the text goes to the log, never to /readyz)
                    delay = backoff(self._db_attempt, base=0.5, cap=self.retry_max_seconds)
                    self._db_attempt += 1
                    self.status = "database unavailable"
                    logger.warning("Slack consumer: %s: %s; retrying in %.1fs", type(exc).__name__, exc, delay)
                    await asyncio.sleep(delay)
        finally:
            await self.service.aclose()

    async def _authenticate(self) -> None:
        attempt = 0
        while True:
            try:
                who = await self._call(self.service.check())
            except SlackMisconfigured as exc:
                self._misconfigured(exc)
                await asyncio.sleep(MISCONFIGURED_PAUSE)
                continue
            except Exception as exc:
                delay = backoff(attempt, base=0.5, cap=self.retry_max_seconds)
                attempt += 1
                self.status = f"unreachable: {_reason(exc)}"
                logger.warning("Slack is unreachable (%s); checking again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if self.status.startswith("misconfigured"):
                return  # the token is fine; the next delivery tells whether the rest is
            if self.status != "ok":
                logger.info("Slack notifications on: channel %s, %s", self.channel, who)
            self.status = "ok"
            return

    def _misconfigured(self, exc: SlackMisconfigured) -> None:
        status = f"{'auth failed' if exc.is_auth else 'misconfigured'}: {error_code(exc.error)}"
        if status != self.status:
            hint = "check SLACK_BOT_TOKEN" if exc.is_auth else "check PGACTIVITY_SLACK_CHANNEL and the app's scopes"
            logger.error(
                "Slack refused the bot (%s): notifications are paused, the stream is not affected; %s. "
                "Checking again every %.0fs.",
                exc.error,
                hint,
                MISCONFIGURED_PAUSE,
            )
        self.status = status

    async def _consume(self) -> None:
        conn = await connect_dedicated(self.conninfo, APPLICATION_NAME)
        async with conn:
            await self._initialize(conn)
            self._db_attempt = 0
            if self.status.startswith("database"):
                self.status = "ok"
            self._rescan = True
            while True:
                wait = await self._step(conn)
                if wait > 0:
                    try:
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)

    async def _initialize(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            cur = await conn.execute(SQL_START, (self.start_from,))
            if await cur.fetchone():
                await conn.execute(SQL_INIT_CURSORS, {"beginning": self.start_from == "beginning"})
                logger.info(
                    "Slack consumer runs for the first time: organizations with earlier events start at their %s",
                    "beginning" if self.start_from == "beginning" else "current end",
                )

    async def _step(self, conn: psycopg.AsyncConnection[Any]) -> float:
        """Ingest what is new, deliver what is due; return how long to wait (a NOTIFY cuts it short)."""
        loop = asyncio.get_running_loop()
        self._wake.clear()
        organizations, self._dirty = self._dirty, set()
        if self._rescan or loop.time() >= self._next_sweep:
            # After a LISTEN reconnect, a full queue, or a while: NOTIFYs may have been missed.
            self._rescan = False
            self._next_sweep = loop.time() + SWEEP_SECONDS
            cur = await conn.execute(SQL_BEHIND)
            organizations |= {str(row[0]) for row in await cur.fetchall()}
        try:
            for organization_id in organizations:
                while await self._ingest(conn, organization_id) >= INGEST_BATCH:
                    pass
        except BaseException:
            self._rescan = True
            raise

        if loop.time() < self._pause_until:
            return self._pause_until - loop.time()
        cur = await conn.execute(
            SQL_PENDING,
            {"interval": self.update_seconds, "grace": self.grace, "limit": PENDING_BATCH},
        )
        pending = [(str(r[0]), float(r[1])) for r in await cur.fetchall()]
        wait = SWEEP_SECONDS
        for activity_id, due_in in pending:
            if due_in > 0:
                wait = min(wait, due_in)
                continue
            outcome = await self._deliver(conn, activity_id)
            if outcome == DONE:
                wait = 0.0
            elif outcome == LOCKED:  # another process has it; look again soon
                wait = min(wait, 0.5)
            if loop.time() < self._pause_until:
                return self._pause_until - loop.time()
        return wait

    async def _ingest(self, conn: psycopg.AsyncConnection[Any], organization_id: str) -> int:
        async with conn.transaction():
            await conn.execute(SQL_CURSOR_CREATE, (organization_id,))
            cur = await conn.execute(SQL_CURSOR_LOCK, (organization_id,))
            row = await cur.fetchone()
            assert row is not None
            cur = await conn.execute(
                SQL_INGEST,
                {"org": organization_id, "after": int(row[0]), "limit": INGEST_BATCH, "channel": self.channel},
            )
            done = await cur.fetchone()
        return int(done[0]) if done else 0

    # -- delivery --------------------------------------------------------------------

    async def _call(self, call: Awaitable[T], *, posting: bool = False) -> T:
        """A service call, cut at the deadline whatever the implementation does."""
        try:
            async with asyncio.timeout(self.deadline):
                return await call
        except TimeoutError:
            no_answer = f"no answer in {self.deadline:.0f}s"
            raise SlackUnavailable(no_answer, maybe_posted=posting, reason=no_answer) from None

    async def _deliver(self, conn: psycopg.AsyncConnection[Any], activity_id: str) -> str:
        key = LOCK_PREFIX + activity_id
        cur = await conn.execute(SQL_TRY_LOCK, (key,))
        row = await cur.fetchone()
        if not row or not row[0]:
            return LOCKED
        try:
            return await self._deliver_locked(conn, activity_id)
        finally:
            await conn.execute(SQL_UNLOCK, (key,))

    async def _deliver_locked(self, conn: psycopg.AsyncConnection[Any], activity_id: str) -> str:
        params = {"id": activity_id, "grace": self.grace, "interval": self.update_seconds}
        try:
            cur = await conn.execute(SQL_ROW, params)
            row = await cur.fetchone()
        except psycopg.errors.DataError as exc:  # this row's data, not the database: never retry it
            return await self._unhandled(conn, activity_id, exc)
        if row is None:
            return IDLE  # the activity was deleted meanwhile
        ts, channel, state, wanted_seq, sent_seq, sent_hash, post_started_at, post_settled, due, activity_json = row
        if state != "active" or not due or (ts is not None and sent_seq >= wanted_seq):
            return IDLE
        try:
            activity = ActivityView.from_json(jsondepth.loads(activity_json))
            digest = text_hash(render(activity))
        except Exception as exc:  # a row we cannot show (odd data, or a bug): it must not hold up the others
            return await self._unhandled(conn, activity_id, exc)
        posting = ts is None
        try:
            if posting:
                return await self._post(conn, activity, int(wanted_seq), digest, post_started_at, bool(post_settled))
            if digest == sent_hash:  # nothing visible changed
                await conn.execute(SQL_UNCHANGED, {"id": activity_id, "sent_seq": wanted_seq})
                return DONE
            ref = MessageRef(str(channel), str(ts))
            if activity.status == "completed":
                await self._call(self.service.post_agent_complete(ref, activity))
            elif activity.status == "failed":
                await self._call(self.service.post_agent_fail(ref, activity))
            else:
                await self._call(self.service.update_agent_progress(ref, activity))
            await conn.execute(SQL_SENT, {"id": activity_id, "sent_seq": wanted_seq, "hash": digest})
            self.updated += 1
            self._succeeded()
            return DONE
        except SlackMisconfigured:
            raise
        except SlackRejected as exc:
            self.errors += 1
            logger.warning("Slack refused the message of activity %s, giving up on it: %s", activity_id, exc)
            await self._reject(conn, activity_id, REFUSED, str(exc))
            return DONE
        except SlackUnavailable as exc:  # Slack or the workspace cannot take messages now: everything waits
            delay = self._pause(exc)
            await conn.execute(SQL_FAILED, {"id": activity_id, "delay": delay, "error": str(exc)[:1000]})
            return FAILED
        except Exception as exc:  # SlackUnknownError, or anything a custom service raises: this message only
            return await self._attempt_failed(conn, activity_id, exc)

    async def _reject(self, conn: psycopg.AsyncConnection[Any], activity_id: str, why: str, error: str) -> None:
        self.rejected[why] += 1
        await conn.execute(SQL_REJECTED, {"id": activity_id, "error": error[:1000]})

    async def _unhandled(self, conn: psycopg.AsyncConnection[Any], activity_id: str, exc: Exception) -> str:
        """Isolate a row this consumer cannot handle: log it, count it, mark it, go on with the others."""
        self.errors += 1
        # The exception's text may quote the row's data: the type only at ERROR, the rest at DEBUG.
        logger.error(
            "cannot make a Slack message of activity %s (%s): giving up on it (state 'rejected')",
            activity_id,
            type(exc).__name__,
        )
        logger.debug("activity %s could not be handled", activity_id, exc_info=exc)
        await self._reject(conn, activity_id, UNHANDLED, f"cannot be handled: {type(exc).__name__}")
        return DONE

    async def _attempt_failed(self, conn: psycopg.AsyncConnection[Any], activity_id: str, exc: Exception) -> str:
        """An error nobody knows: retry this message with backoff, at most max_attempts times."""
        self.errors += 1
        cur = await conn.execute(
            SQL_ATTEMPT_FAILED,
            {"id": activity_id, "error": str(exc)[:1000], "base": 0.5, "cap": self.retry_max_seconds},
        )
        row = await cur.fetchone()
        attempts = int(row[0]) if row else self.max_attempts
        code = _reason(exc)
        self.status = f"error: {code}"
        if attempts >= self.max_attempts:
            logger.warning(
                "Slack call for activity %s failed %d times (%s), giving up on it: %s", activity_id, attempts, code, exc
            )
            await self._reject(conn, activity_id, ATTEMPTS, f"gave up after {attempts} attempts: {exc}")
            return DONE
        logger.warning("Slack call for activity %s failed (%s, attempt %d): %s", activity_id, code, attempts, exc)
        return FAILED

    async def _post(
        self,
        conn: psycopg.AsyncConnection[Any],
        activity: ActivityView,
        wanted_seq: int,
        digest: str,
        post_started_at: datetime | None,
        post_settled: bool,
    ) -> str:
        if post_started_at is not None:
            # An earlier chat.postMessage got no answer: it may have landed.
            if not post_settled:
                return IDLE  # it may still be in flight in another process
            found = await self._call(self.service.find_agent_message(activity, since=post_started_at))
            if found is not None:
                await conn.execute(
                    SQL_POSTED,
                    {"id": activity.id, "ts": found.ts, "channel": found.channel, "sent_seq": 0, "hash": None},
                )
                self.recovered += 1
                logger.info(
                    "found the Slack message of activity %s after an interrupted post: not posting again", activity.id
                )
                return DONE
        # Committed before the call: from here on, a crash leaves a trace to look for.
        await conn.execute(SQL_POST_STARTED, {"id": activity.id, "me": self.instance, "channel": self.channel})
        try:
            ref = await self._call(self.service.post_agent_start(activity), posting=True)
        except (SlackMisconfigured, SlackRejected, SlackUnknownError):
            await conn.execute(SQL_POST_CLEAR, {"id": activity.id})  # Slack said no: nothing was posted
            raise
        except SlackUnavailable as exc:
            if not exc.maybe_posted:  # never sent, or refused with 429
                await conn.execute(SQL_POST_CLEAR, {"id": activity.id})
            raise
        cur = await conn.execute(
            SQL_POSTED,
            {"id": activity.id, "ts": ref.ts, "channel": ref.channel, "sent_seq": wanted_seq, "hash": digest},
        )
        if await cur.fetchone() is None:
            # Only if this connection was lost during the post and another process posted too.
            logger.error("activity %s got a second Slack message (ts %s): lock lost mid-post", activity.id, ref.ts)
        self.posted += 1
        self._succeeded()
        return DONE

    def _succeeded(self) -> None:
        if self._failures or self.status != "ok":
            logger.info("Slack is reachable again")
        self._failures = 0
        self.status = "ok"

    def _pause(self, exc: SlackUnavailable) -> float:
        """Back off every delivery of this process after a transient failure; returns the delay."""
        self.errors += 1
        delay = exc.retry_after or backoff(self._failures, base=0.5, cap=self.retry_max_seconds)
        self._failures += 1
        self._pause_until = asyncio.get_running_loop().time() + delay
        self.status = f"retrying in {delay:.1f}s: {exc.reason}"
        logger.warning("Slack call failed (%s); retrying in %.1fs", exc, delay)
        return delay


def _reason(exc: BaseException) -> str:
    """What /readyz may show of an error: a fixed text or Slack's error code, never the exception's text."""
    if isinstance(exc, SlackUnavailable):
        return exc.reason
    if isinstance(exc, SlackUnknownError | SlackMisconfigured):
        return error_code(exc.error)
    return type(exc).__name__


class SlackCollector(Collector):
    """The consumer's counters for /metrics, read at scrape time."""

    def __init__(self, consumer: SlackConsumer) -> None:
        self.consumer = consumer

    def collect(self) -> Iterator[Metric]:
        c = self.consumer
        yield CounterMetricFamily("pgactivity_slack_messages_posted", "Slack messages posted", value=c.posted)
        yield CounterMetricFamily("pgactivity_slack_messages_updated", "Slack messages edited", value=c.updated)
        yield CounterMetricFamily(
            "pgactivity_slack_messages_recovered",
            "Messages found in the channel after an interrupted post, instead of posting again",
            value=c.recovered,
        )
        yield CounterMetricFamily("pgactivity_slack_errors", "Failed Slack calls", value=c.errors)
        rejected = CounterMetricFamily(
            "pgactivity_slack_messages_rejected",
            "Activities given up on (state 'rejected'): refused by Slack for good, out of attempts "
            "after an unknown error, or a row the consumer could not handle",
            labels=["reason"],
        )
        for why, count in sorted(c.rejected.items()):
            rejected.add_metric([why], count)
        yield rejected
        yield GaugeMetricFamily("pgactivity_slack_ok", "1 while Slack calls succeed", value=int(c.status == "ok"))
