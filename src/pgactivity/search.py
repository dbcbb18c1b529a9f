"""Reads for the query API: search an organization's activities, one activity, its events.

Every query is scoped to one organization. The search is ordered newest first,
by (created_at DESC, id DESC), and pages with a keyset cursor over that pair,
so a page costs the same wherever it is and concurrent inserts never shift it.
Filters are fixed SQL fragments joined with AND; values are always parameters.
The rows come out of PostgreSQL already as JSON (agent_activity_json and the
event log's payload) and are passed through without being parsed.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pgactivity.store import SLIM_FIELD_BYTES, SNAPSHOT_BYTES, fit

STATUSES = ("running", "completed", "failed")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
DEFAULT_EVENTS_LIMIT = 200
MAX_EVENTS_LIMIT = 1000

# What q matches: the agent name and the message.
_TEXT = "(coalesce(a.agent_name, '') || ' ' || coalesce(a.message, ''))"
# What the trigram index reads (migration 20261202000001): the name, message and category of a
# finished activity, NULL while it runs. q and category each imply an ILIKE on it that the
# index serves (a necessary condition, checked exactly by the filter beside it).
_INDEXED = "a.search_text"

_FILTERS: dict[str, sql.SQL] = {
    "status": sql.SQL("a.status = %(status)s"),
    "agent_type": sql.SQL("a.agent_type = %(agent_type)s"),
    "agent_name": sql.SQL("a.agent_name = %(agent_name)s"),
    "session_id": sql.SQL("a.session_id = %(session_id)s"),
    "category": sql.SQL("a.category = %(category)s"),
    "since": sql.SQL("a.created_at >= %(since)s"),
    "until": sql.SQL("a.created_at < %(until)s"),
    "text": sql.SQL(_TEXT + " ILIKE %(text)s"),
    "cursor": sql.SQL("(a.created_at, a.id) < (%(cursor_at)s, %(cursor_id)s)"),
}
# Filters the btree indexes serve (organization_id first, then the created_at order).
_RANGE = ("since", "until", "cursor")
# Filters no btree serves: a common value is found walking the newest rows, a rare one
# through the trigram index (see search()).
_TEXTUAL = {"text": "text", "category": "category_like"}

# Each item in its slim form, with the size of its whole JSON when something was cut (NULL
# when a field alone is over the budget), as in store.SQL_SNAPSHOT: a page keeps to the
# snapshot's byte budget by the same rule (store.fit). created_at, for the cursor, is kept
# within Python's datetime: rows from before migration 20261201000002 may hold 'infinity'.
_COLUMNS = sql.SQL(
    """least(greatest(a.created_at, '0001-01-01Z'), '9999-12-31Z'), a.id, s.slim::text,
       CASE WHEN s.slim ? 'truncated' THEN
           CASE WHEN greatest(pg_column_size(a.input_data), pg_column_size(a.output_data),
                              pg_column_size(a.metadata), pg_column_size(a.message),
                              pg_column_size(a.error)) <= %(budget)s
                THEN octet_length(agent_activity_json(a)::text) END END"""
)
_SEARCH = sql.SQL(
    """
SELECT {columns}
FROM agent_activities AS a
CROSS JOIN LATERAL (SELECT agent_activity_json_slim(a, %(field_bytes)s) AS slim) AS s
WHERE a.organization_id = %(org)s{filters}
ORDER BY a.created_at DESC, a.id DESC
LIMIT %(limit)s
"""
)
# The newest `window` rows (after the cursor, within since/until), then the other filters.
_WALK = sql.SQL(
    """
SELECT {columns}
FROM (
    SELECT a.* FROM agent_activities AS a
    WHERE a.organization_id = %(org)s{range}
    ORDER BY a.created_at DESC, a.id DESC
    LIMIT %(window)s
) AS a
CROSS JOIN LATERAL (SELECT agent_activity_json_slim(a, %(field_bytes)s) AS slim) AS s
WHERE true{filters}
ORDER BY a.created_at DESC, a.id DESC
LIMIT %(limit)s
"""
)
_WINDOW_ROWS = sql.SQL(
    """
SELECT count(*) FROM (
    SELECT FROM agent_activities AS a
    WHERE a.organization_id = %(org)s{range}
    ORDER BY a.created_at DESC, a.id DESC
    LIMIT %(window)s
) AS w
"""
)
_FINISHED = sql.SQL("a.status <> 'running'")
_RUNNING = sql.SQL("a.status = 'running'")
_UNION = sql.SQL(
    """
SELECT * FROM (({finished}) UNION ALL ({running})) AS page
ORDER BY 1 DESC, 2 DESC
LIMIT %(limit)s
"""
)
# How many of the newest rows the walk looks at before the trigram index takes over.
WALK_WINDOW = 3000
# A q or category the planner expects in at most this many finished activities of the
# organization goes to the trigram index at once: the index is cheap for it (its cost grows
# with the matches, a few milliseconds for hundreds) and the walk would not fill a page.
RARE_ROWS = 2000
# The planner's estimate of those matches, from the column statistics (pg_trgm's selectivity
# of the pattern, the organization's share of the table): planning only, no rows read.
_ESTIMATE = sql.SQL(
    """
EXPLAIN (FORMAT JSON)
SELECT FROM agent_activities AS a
WHERE a.organization_id = %(org)s{filters}
"""
)

SQL_ACTIVITY = """
SELECT agent_activity_json(a)::text
FROM agent_activities AS a
WHERE a.id = %(id)s AND a.organization_id = %(org)s
"""
SQL_ACTIVITY_EXISTS = """
SELECT EXISTS (SELECT FROM agent_activities WHERE id = %(id)s AND organization_id = %(org)s)
"""
SQL_ACTIVITY_EVENTS = """
SELECT e.seq, e.payload::text
FROM agent_activity_events AS e
WHERE e.activity_id = %(id)s AND e.organization_id = %(org)s AND e.seq > %(after)s
ORDER BY e.seq
LIMIT %(limit)s
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEX = frozenset("0123456789abcdef")
_MICROSECOND = timedelta(microseconds=1)


class InvalidCursor(ValueError):
    """The cursor was not made by this server (or was tampered with)."""


def _digits(text: str, max_length: int) -> bool:
    """ASCII digits only (str.isdigit() alone accepts `²`, which int() refuses)."""
    return 0 < len(text) <= max_length and text.isascii() and text.isdigit()


def _b64encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _b64decode(raw: str) -> str:
    if not raw or len(raw) > 200:
        raise InvalidCursor("invalid cursor")
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidCursor("invalid cursor") from None


@dataclass(frozen=True, slots=True)
class ActivityCursor:
    """Position after the last item of a page: its (created_at, id)."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // _MICROSECOND
        return _b64encode(f"a1:{micros}:{self.id.hex}")

    @classmethod
    def decode(cls, raw: str) -> ActivityCursor:
        parts = _b64decode(raw).split(":")
        try:
            if len(parts) != 3 or parts[0] != "a1" or not _digits(parts[1].removeprefix("-"), 18):
                raise ValueError(raw)
            if len(parts[2]) != 32 or not set(parts[2]) <= _HEX:  # int(x, 16) would also take `_`
                raise ValueError(raw)
            return cls(_EPOCH + int(parts[1]) * _MICROSECOND, uuid.UUID(hex=parts[2]))
        except (ValueError, OverflowError):
            raise InvalidCursor("invalid cursor") from None


@dataclass(frozen=True, slots=True)
class EventCursor:
    """Position after the last event of a page: its seq."""

    seq: int

    def encode(self) -> str:
        return _b64encode(f"e1:{self.seq}")

    @classmethod
    def decode(cls, raw: str) -> EventCursor:
        kind, _, seq = _b64decode(raw).partition(":")
        if kind != "e1" or not _digits(seq, 18):
            raise InvalidCursor("invalid cursor")
        return cls(int(seq))


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    """A validated search; None means "any"."""

    organization_id: str
    status: str | None = None
    agent_type: str | None = None
    agent_name: str | None = None
    session_id: str | None = None
    category: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: ActivityCursor | None = None

    def _params(self, budget: int) -> tuple[dict[str, object], list[str]]:
        params: dict[str, object] = {
            "org": self.organization_id,
            "limit": self.limit + 1,
            "budget": budget,
            "field_bytes": SLIM_FIELD_BYTES,
            "window": WALK_WINDOW,
        }
        used: list[str] = []
        for name in ("status", "agent_type", "agent_name", "session_id", "category", "since", "until"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
                used.append(name)
        if self.category is not None:
            params["category_like"] = "% " + like_escape(self.category)
        if self.text is not None:
            params["text"] = "%" + like_escape(self.text) + "%"
            used.append("text")
        if self.cursor is not None:
            params["cursor_at"] = self.cursor.created_at
            params["cursor_id"] = self.cursor.id
            used.append("cursor")
        return params, used

    @property
    def textual(self) -> bool:
        """A filter no btree serves (q, category): search() walks the newest rows first."""
        return self.text is not None or self.category is not None

    def statement(self, budget: int = SNAPSHOT_BYTES) -> tuple[sql.Composed, dict[str, object]]:
        """The query through the indexes (fixed fragments for the filters in use) and its
        parameters; fetches limit + 1."""
        params, used = self._params(budget)
        filters = [_FILTERS[name] for name in used]
        hints = _hints(used)
        if not hints or self.status == "running":
            return _SEARCH.format(columns=_COLUMNS, filters=_and(filters)), params
        if self.status is not None:  # completed or failed: the trigram index holds them
            return _SEARCH.format(columns=_COLUMNS, filters=_and([*filters, _FINISHED, *hints])), params
        # The trigram index holds finished activities only (a running one changes its message at
        # every progress update, and they are few): those through it, the running ones through
        # the status index, newest first from both.
        finished = _SEARCH.format(columns=_COLUMNS, filters=_and([*filters, _FINISHED, *hints]))
        running = _SEARCH.format(columns=_COLUMNS, filters=_and([*filters, _RUNNING]))
        return _UNION.format(finished=finished, running=running), params

    def estimate_statement(self) -> tuple[sql.Composed, dict[str, object]]:
        """EXPLAIN of the finished activities the trigram index would find for q and category."""
        params, used = self._params(SNAPSHOT_BYTES)
        return _ESTIMATE.format(filters=_and([_FINISHED, *_hints(used)])), params

    def walk_statement(self, budget: int = SNAPSHOT_BYTES) -> tuple[sql.Composed, sql.Composed, dict[str, object]]:
        """The walk over the newest WALK_WINDOW rows, and the count of those rows."""
        params, used = self._params(budget)
        ranges = _and([_FILTERS[name] for name in used if name in _RANGE])
        others = _and([_FILTERS[name] for name in used if name not in _RANGE])
        return _WALK.format(columns=_COLUMNS, range=ranges, filters=others), _WINDOW_ROWS.format(range=ranges), params


def _hints(used: list[str]) -> list[sql.SQL]:
    """The ILIKE on the trigram index's column that each q or category in use implies."""
    return [sql.SQL(_INDEXED + f" ILIKE %({_TEXTUAL[name]})s") for name in _TEXTUAL if name in used]


def _and(conditions: list[sql.SQL]) -> sql.Composed:
    return sql.Composed([sql.Composed([sql.SQL("\n  AND "), c]) for c in conditions])


def like_escape(text: str) -> str:
    """Match text literally inside a LIKE pattern (backslash is LIKE's default escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class Page:
    items: list[str]  # JSON objects, as PostgreSQL wrote them
    next_cursor: str | None

    def json_bytes(self) -> bytes:
        return b"".join(
            (
                b'{"items": [',
                ", ".join(self.items).encode(),
                b'], "nextCursor": ',
                json.dumps(self.next_cursor).encode(),
                b"}",
            )
        )


async def search(pool: AsyncConnectionPool, query: ActivityQuery, *, budget: int = SNAPSHOT_BYTES) -> Page:
    """A page of activities; within about `budget` bytes (large fields cut past it, see store.fit).

    Never a prepared statement: the best plan depends on the values, and after five runs
    PostgreSQL may settle on one generic plan for all of them (a common word then took 1.6 s
    through the trigram index). With q or category, a value the planner expects in at most
    RARE_ROWS finished activities goes to the trigram index at once; for any other the
    newest WALK_WINDOW rows are looked at first: a common value fills the page there in a
    few milliseconds, and only a rarer one goes on to the trigram index. The estimate only
    chooses the order: a wrong one costs time, never a row."""
    async with pool.connection() as conn:
        rows: list[tuple[Any, ...]] | None = None
        if query.textual and await _estimated_matches(conn, query) > RARE_ROWS:
            walk, window, params = query.walk_statement(budget)
            cur = await conn.execute(walk, params, prepare=False)
            rows = await cur.fetchall()
            if len(rows) <= query.limit:
                cur = await conn.execute(window, params, prepare=False)
                seen = await cur.fetchone()
                if not seen or seen[0] >= WALK_WINDOW:
                    rows = None  # the page is not full within the window: ask the indexes
        if rows is None:
            statement, params = query.statement(budget)
            cur = await conn.execute(statement, params, prepare=False)
            rows = await cur.fetchall()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        items = await fit(conn, [(r[1], r[2], r[3]) for r in rows], budget)
    next_cursor = ActivityCursor(rows[-1][0], rows[-1][1]).encode() if more else None
    return Page(items, next_cursor)


async def _estimated_matches(conn: AsyncConnection[Any], query: ActivityQuery) -> float:
    statement, params = query.estimate_statement()
    cur = await conn.execute(statement, params, prepare=False)
    row = await cur.fetchone()
    try:
        return float(row[0][0]["Plan"]["Plan Rows"]) if row else float("inf")
    except (LookupError, TypeError, ValueError):
        return float("inf")  # an unexpected plan: the walk first, as without an estimate


async def activity(pool: AsyncConnectionPool, organization_id: str, activity_id: uuid.UUID) -> str | None:
    """The activity as JSON, or None when the organization has no such activity."""
    async with pool.connection() as conn:
        cur = await conn.execute(SQL_ACTIVITY, {"id": activity_id, "org": organization_id})
        row = await cur.fetchone()
    return str(row[0]) if row else None


async def activity_events(
    pool: AsyncConnectionPool,
    organization_id: str,
    activity_id: uuid.UUID,
    *,
    after: EventCursor | None = None,
    limit: int = DEFAULT_EVENTS_LIMIT,
) -> Page | None:
    """The activity's events in seq order, or None when the organization has no such activity."""
    params = {"id": activity_id, "org": organization_id, "after": after.seq if after else 0, "limit": limit + 1}
    async with pool.connection() as conn:
        cur = await conn.execute(SQL_ACTIVITY_EXISTS, params)
        row = await cur.fetchone()
        if not row or not row[0]:
            return None
        cur = await conn.execute(SQL_ACTIVITY_EVENTS, params)
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = EventCursor(int(rows[-1][0])).encode() if more else None
    return Page([r[1] for r in rows], next_cursor)
