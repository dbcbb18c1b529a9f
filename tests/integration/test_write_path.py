"""What a write costs PostgreSQL: the parts a benchmark would only show as a slower number."""

from __future__ import annotations

import time

import psycopg
from psycopg.types.json import Jsonb

UPDATES = 100
SQL_UPDATES = """
SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'agent_activities'::regclass
"""


def _updates(url: str, expected: int) -> tuple[int, int]:
    """(updates, heap-only updates) of agent_activities once the statistics hold `expected` updates."""
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(SQL_UPDATES).fetchone()
        assert row is not None
        if row[0] >= expected or time.monotonic() > deadline:
            return int(row[0]), int(row[1])
        time.sleep(0.05)


def test_progress_updates_are_heap_only(db_url: str) -> None:
    """A progress update with a new message writes no index entry (HOT): no index may read the
    message of a running activity. Each one wrote into all six btree indexes while the trigram
    index read it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT agent_activity_start('org-hot', 'executor', 'executor-1', 'ses-1', 'quick', %s, %s)",
            (Jsonb({"prompt": "x" * 1000}), Jsonb({"model": "m"})),
        ).fetchone()
        assert row is not None
        for step in range(UPDATES):
            conn.execute("SELECT agent_activity_progress(%s, %s, %s)", (row[0], f"reading file {step}", step % 101))
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the backend reports its statistics when it goes idle after this
    updates, hot = _updates(db_url, UPDATES)
    assert updates == UPDATES
    assert hot >= UPDATES * 0.9, f"{hot} of {updates} progress updates were heap-only"


def test_finished_activities_are_found_by_their_message(db_url: str) -> None:
    """search_text follows the row: NULL while it runs, the name, message and category once it has
    finished, and the trigram index finds it there."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT agent_activity_start('org-s', 'executor', 'builder', NULL, 'nightly')").fetchone()
        assert row is not None
        conn.execute("SELECT agent_activity_progress(%s, 'compiling the frobnicator')", (row[0],))
        text = conn.execute("SELECT search_text FROM agent_activities WHERE id = %s", (row[0],)).fetchone()
        assert text == (None,)
        conn.execute("SELECT agent_activity_complete(%s)", (row[0],))
        conn.execute("SET enable_seqscan = off")
        found = conn.execute(
            "SELECT id, search_text FROM agent_activities WHERE status <> 'running' AND search_text ILIKE '%frobnicat%'"
        ).fetchall()
        assert found == [(row[0], "builder compiling the frobnicator nightly")]
