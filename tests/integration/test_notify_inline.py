"""What the NOTIFY carries, and the counter of transactions that write many events.

The event rides in its NOTIFY when it fits `pgactivity.notify_max_bytes`
(byte-identical to the log's payload, so a streamer can send either); larger
ones are {org, seq}; a transaction past its first 100 events of an
organization notifies {org} once more. A transaction's events keep seqs
1..N in order however many it writes, and the counter row ends at N.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.helpers import run_psql

CHANNEL = "agent_activity"


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield conn


def drain(listen: psycopg.Connection[Any], count: int, timeout: float = 10) -> list[str]:
    got = [n.payload for n in listen.notifies(timeout=timeout, stop_after=count)]
    assert len(got) == count, f"expected {count} notifications, got {len(got)}"
    assert [n.payload for n in listen.notifies(timeout=0.1)] == []
    return got


def log_texts(url: str, org: str) -> dict[int, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT seq, payload::text FROM agent_activity_events WHERE organization_id = %s ORDER BY seq", (org,)
        ).fetchall()
    return {int(seq): str(text) for seq, text in rows}


def counter(url: str, org: str) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT last_seq FROM agent_activity_counters WHERE organization_id = %s", (org,)).fetchone()
    return int(row[0]) if row else None


def test_small_events_ride_in_their_notify_exactly_as_the_log_holds_them(
    db_url: str, listener: psycopg.Connection[Any]
) -> None:
    run_psql(
        db_url,
        """SELECT agent_activity_start(organization_id => 'org-i', agent_type => 'executor',
                  input_data => '{"prompt": "ünïcode \\" and \\\\ and \\n"}');""",
    )
    big = "x" * 8000
    run_psql(
        db_url,
        f"""SELECT agent_activity_start(organization_id => 'org-i', agent_type => 'executor',
                             input_data => '{{"blob": "{big}"}}');""",
    )
    notes = drain(listener, 2)
    texts = log_texts(db_url, "org-i")
    first = json.loads(notes[0])
    assert (first["org"], first["seq"]) == ("org-i", 1)
    assert abs(first["at"] - time.time()) < 600
    # The exact bytes of the log's payload, after `, "event": `, up to the closing brace.
    assert notes[0].split(', "event": ', 1)[1][:-1] == texts[1]
    assert json.loads(notes[1]) == {"org": "org-i", "seq": 2}  # too large to ride along
    assert all(len(n.encode()) < 8000 for n in notes)


def test_notify_max_bytes_sets_the_limit_and_zero_turns_inline_events_off(
    db_url: str, listener: psycopg.Connection[Any]
) -> None:
    start = "SELECT agent_activity_start(organization_id => 'org-m', agent_type => 'executor');"
    run_psql(db_url, "SET pgactivity.notify_max_bytes = 0;\n" + start)
    run_psql(db_url, "SET pgactivity.notify_max_bytes = 100;\n" + start)  # smaller than any event
    run_psql(db_url, "SET pgactivity.notify_max_bytes = 'nonsense';\n" + start)  # the default (7500)
    run_psql(db_url, "SET pgactivity.notify_max_bytes = 99999;\n" + start)  # capped under 8000
    notes = [json.loads(n) for n in drain(listener, 4)]
    assert notes[0] == {"org": "org-m", "seq": 1}
    assert notes[1] == {"org": "org-m", "seq": 2}
    assert "event" in notes[2]
    assert "event" in notes[3]


@pytest.mark.timeout(120)  # quadratic costs minutes here; linear, a few seconds
def test_a_20k_row_transaction_gets_seqs_1_to_20k_in_order(db_url: str, listener: psycopg.Connection[Any]) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO agent_activities (organization_id, agent_type, message) "
            "SELECT 'org-bulk', 'import', 'row ' || n FROM generate_series(1, 20000) AS n"
        )
        conn.execute("SELECT agent_activity_start(organization_id => 'org-other', agent_type => 'x')")
        conn.commit()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT e.seq, a.message FROM agent_activity_events AS e JOIN agent_activities AS a ON a.id = e.activity_id"
            " WHERE e.organization_id = 'org-bulk' ORDER BY e.seq"
        ).fetchall()
    assert [seq for seq, _ in rows] == list(range(1, 20001))
    assert [message for _, message in rows] == [f"row {n}" for n in range(1, 20001)]  # insert order
    assert counter(db_url, "org-bulk") == 20000
    assert counter(db_url, "org-other") == 1
    # What made it quadratic: a version of the counter row per event, each update walking the
    # versions before it (20k versions fill ~110 pages). Now the row is updated a few times.
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT pg_relation_size('agent_activity_counters') / current_setting('block_size')::int"
        ).fetchone()
    assert row is not None
    assert row[0] <= 2, f"the counter table grew to {row[0]} pages"
    # 100 events inline, then one folded {org} for the rest, plus the other organization's.
    notes = [json.loads(n) for n in drain(listener, 102)]
    bulk = [n for n in notes if n["org"] == "org-bulk"]
    assert [n.get("seq") for n in bulk] == [*range(1, 101), None]
    assert all("event" in n for n in bulk[:100])
    assert bulk[100] == {"org": "org-bulk"}


def test_interleaved_organizations_savepoints_and_the_next_transaction_keep_seqs_exact(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO agent_activities (organization_id, agent_type, message) "
            "SELECT CASE WHEN n % 2 = 0 THEN 'org-x' ELSE 'org-y' END, 'import', 'first ' || n "
            "FROM generate_series(1, 600) AS n"
        )
        conn.execute("SAVEPOINT s")
        conn.execute(
            "INSERT INTO agent_activities (organization_id, agent_type) "
            "SELECT 'org-x', 'dropped' FROM generate_series(1, 50)"
        )
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute(
            "INSERT INTO agent_activities (organization_id, agent_type, message) "
            "SELECT 'org-x', 'import', 'second ' || n FROM generate_series(1, 10) AS n"
        )
        conn.commit()
        conn.execute("SELECT agent_activity_start(organization_id => 'org-x', agent_type => 'after')")
        conn.commit()
    texts = log_texts(db_url, "org-x")
    assert list(texts) == list(range(1, 312))
    assert [json.loads(t)["agentType"] for t in texts.values()] == ["import"] * 310 + ["after"]
    assert list(log_texts(db_url, "org-y")) == list(range(1, 301))
    assert (counter(db_url, "org-x"), counter(db_url, "org-y")) == (311, 300)


def test_constraints_set_immediate_still_keep_the_counter_exact(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        conn.execute(
            "INSERT INTO agent_activities (organization_id, agent_type) "
            "SELECT 'org-now', 'import' FROM generate_series(1, 300)"
        )
        conn.execute("SELECT agent_activity_start(organization_id => 'org-now', agent_type => 'one more')")
        conn.commit()
        conn.execute("SELECT agent_activity_start(organization_id => 'org-now', agent_type => 'next')")
        conn.commit()
    assert list(log_texts(db_url, "org-now")) == list(range(1, 303))
    assert counter(db_url, "org-now") == 302
