"""The schema as every writer sees it: plain SQL and the SQL API, through psql and psycopg.

Each write must become exactly one event row (with the event format of design.md §3)
and one tiny NOTIFY on `agent_activity`; each rejected write must leave the row, the
event log and the stream untouched.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers import run_psql

CHANNEL = "agent_activity"
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
EVENT_KEYS = {
    "type",
    "seq",
    "activityId",
    "organizationId",
    "sessionId",
    "agentType",
    "agentName",
    "category",
    "status",
    "data",
    "timestamp",
}
NOTIFY_LIMIT = 8000


# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A LISTEN connection, opened before the test writes anything."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield conn


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


def receive(listen: psycopg.Connection[Any], count: int, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Exactly `count` NOTIFY payloads as {org, seq}, then make sure no more arrive.

    A payload that carries its event inline is checked against its own org and seq
    (tests/integration/test_notify_inline.py checks it against the log)."""
    got = []
    for note in listen.notifies(timeout=timeout, stop_after=count):
        assert note.channel == CHANNEL
        assert len(note.payload.encode()) < NOTIFY_LIMIT
        payload = json.loads(note.payload)
        event = payload.pop("event", None)
        payload.pop("at", None)
        if event is not None:
            assert (event["organizationId"], event["seq"]) == (payload["org"], payload["seq"])
        got.append(payload)
    assert len(got) == count, f"expected {count} notifications, got {got}"
    assert_no_notify(listen)
    return got


def assert_no_notify(listen: psycopg.Connection[Any], timeout: float = 0.1) -> None:
    extra = [n.payload for n in listen.notifies(timeout=timeout)]
    assert extra == []


def events(url: str, org: str | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as c:
        return c.execute(
            "SELECT organization_id, seq, activity_id, type, payload, created_at FROM agent_activity_events"
            " WHERE %(org)s::text IS NULL OR organization_id = %(org)s ORDER BY organization_id, seq",
            {"org": org},
        ).fetchall()


def activity_row(url: str, activity_id: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as c:
        row = c.execute("SELECT * FROM agent_activities WHERE id = %s", (activity_id,)).fetchone()
    assert row is not None
    return row


def psql_value(url: str, sql: str) -> str:
    return run_psql(url, sql).stdout.strip()


def parse_ts(value: str) -> datetime:
    assert TIMESTAMP_RE.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_event(
    event: dict[str, Any],
    *,
    org: str,
    seq: int,
    type_: str,
    activity_id: str,
    data: dict[str, Any],
    session_id: str | None = None,
    agent_type: str = "executor",
    agent_name: str | None = None,
    category: str | None = None,
) -> None:
    assert event["organization_id"] == org
    assert event["seq"] == seq
    assert event["type"] == type_
    assert str(event["activity_id"]) == activity_id
    payload = event["payload"]
    assert set(payload) == EVENT_KEYS
    assert payload["type"] == type_
    assert payload["seq"] == seq
    assert payload["activityId"] == activity_id
    assert payload["organizationId"] == org
    assert payload["sessionId"] == session_id
    assert payload["agentType"] == agent_type
    assert payload["agentName"] == agent_name
    assert payload["category"] == category
    assert payload["data"] == data
    parse_ts(payload["timestamp"])


# --- events and NOTIFY, written by psql -------------------------------------------------------------


def test_sql_api_via_psql_emits_events_and_notifies(db_url: str, listener: psycopg.Connection[Any]) -> None:
    first = psql_value(
        db_url,
        """SELECT agent_activity_start(organization_id => 'org-123', agent_type => 'executor',
               agent_name => 'executor-high', session_id => 'ses-456', category => 'ultrabrain',
               input_data => '{"prompt":"Implement feature X"}', metadata => '{"source":"slack"}');""",
    )
    uuid.UUID(first)
    run_psql(
        db_url,
        f"SELECT agent_activity_progress(id => '{first}', message => 'Analyzing codebase...', progress => 30);",
    )
    run_psql(
        db_url,
        f"""SELECT agent_activity_complete(id => '{first}',
                   output_data => '{{"filesChanged":["src/api/users.ts"]}}');""",
    )
    second = psql_value(db_url, "SELECT agent_activity_start(organization_id => 'org-123', agent_type => 'executor');")
    run_psql(db_url, f"SELECT agent_activity_fail(id => '{second}', error => 'timeout');")

    assert receive(listener, 5) == [{"org": "org-123", "seq": n} for n in range(1, 6)]

    log = events(db_url)
    assert [e["seq"] for e in log] == [1, 2, 3, 4, 5]
    described = {"session_id": "ses-456", "agent_name": "executor-high", "category": "ultrabrain"}
    check_event(
        log[0],
        org="org-123",
        seq=1,
        type_="agent_started",
        activity_id=first,
        data={"inputData": {"prompt": "Implement feature X"}, "metadata": {"source": "slack"}},
        **described,
    )
    check_event(
        log[1],
        org="org-123",
        seq=2,
        type_="agent_progress",
        activity_id=first,
        data={"message": "Analyzing codebase...", "progress": 30},
        **described,
    )
    check_event(
        log[2],
        org="org-123",
        seq=3,
        type_="agent_completed",
        activity_id=first,
        data={"outputData": {"filesChanged": ["src/api/users.ts"]}},
        **described,
    )
    check_event(
        log[3],
        org="org-123",
        seq=4,
        type_="agent_started",
        activity_id=second,
        data={"inputData": None, "metadata": None},
    )
    check_event(log[4], org="org-123", seq=5, type_="agent_failed", activity_id=second, data={"error": "timeout"})

    row = activity_row(db_url, first)
    assert row["status"] == "completed"
    assert row["progress"] == 100
    assert row["message"] == "Analyzing codebase..."
    assert row["output_data"] == {"filesChanged": ["src/api/users.ts"]}
    assert row["completed_at"] is not None
    # Each event's timestamp is the row's time at that write.
    assert parse_ts(log[0]["payload"]["timestamp"]) == row["created_at"]
    assert parse_ts(log[2]["payload"]["timestamp"]) == row["updated_at"]

    failed = activity_row(db_url, second)
    assert (failed["status"], failed["error"]) == ("failed", "timeout")
    assert failed["completed_at"] is not None


def test_plain_insert_and_update_via_psql_emit_the_same_events(db_url: str, listener: psycopg.Connection[Any]) -> None:
    first = psql_value(
        db_url,
        """INSERT INTO agent_activities (organization_id, agent_type, agent_name, session_id, category,
                                         input_data, metadata)
           VALUES ('org-123', 'executor', 'executor-high', 'ses-456', 'ultrabrain',
                   '{"prompt": "x"}', '{"source": "psql"}')
           RETURNING id;""",
    )
    run_psql(db_url, f"UPDATE agent_activities SET message = 'step 1', progress = 40 WHERE id = '{first}';")
    run_psql(
        db_url,
        f"""UPDATE agent_activities SET status = 'completed', output_data = '{{"ok": true}}'
            WHERE id = '{first}';""",
    )
    second = psql_value(
        db_url,
        "INSERT INTO agent_activities (organization_id, agent_type) VALUES ('org-123', 'planner') RETURNING id;",
    )
    run_psql(db_url, f"UPDATE agent_activities SET status = 'failed', error = 'boom' WHERE id = '{second}';")

    assert receive(listener, 5) == [{"org": "org-123", "seq": n} for n in range(1, 6)]
    log = events(db_url)
    described = {"session_id": "ses-456", "agent_name": "executor-high", "category": "ultrabrain"}
    check_event(
        log[0],
        org="org-123",
        seq=1,
        type_="agent_started",
        activity_id=first,
        data={"inputData": {"prompt": "x"}, "metadata": {"source": "psql"}},
        **described,
    )
    check_event(
        log[1],
        org="org-123",
        seq=2,
        type_="agent_progress",
        activity_id=first,
        data={"message": "step 1", "progress": 40},
        **described,
    )
    check_event(
        log[2],
        org="org-123",
        seq=3,
        type_="agent_completed",
        activity_id=first,
        data={"outputData": {"ok": True}},
        **described,
    )
    check_event(
        log[3],
        org="org-123",
        seq=4,
        type_="agent_started",
        activity_id=second,
        data={"inputData": None, "metadata": None},
        agent_type="planner",
    )
    check_event(
        log[4],
        org="org-123",
        seq=5,
        type_="agent_failed",
        activity_id=second,
        data={"error": "boom"},
        agent_type="planner",
    )
    assert activity_row(db_url, first)["completed_at"] is not None
    assert activity_row(db_url, second)["completed_at"] is not None


def test_seq_is_per_organization_and_starts_at_1(db_url: str, listener: psycopg.Connection[Any]) -> None:
    ids = {}
    for org in ("org-a", "org-b", "org-a", "org-c", "org-a", "org-b"):
        ids[org] = psql_value(
            db_url, f"SELECT agent_activity_start(organization_id => '{org}', agent_type => 'executor');"
        )
    run_psql(db_url, f"SELECT agent_activity_progress(id => '{ids['org-b']}', progress => 5);")

    expected = [
        {"org": "org-a", "seq": 1},
        {"org": "org-b", "seq": 1},
        {"org": "org-a", "seq": 2},
        {"org": "org-c", "seq": 1},
        {"org": "org-a", "seq": 3},
        {"org": "org-b", "seq": 2},
        {"org": "org-b", "seq": 3},
    ]
    assert receive(listener, len(expected)) == expected
    assert [e["seq"] for e in events(db_url, "org-a")] == [1, 2, 3]
    assert [e["seq"] for e in events(db_url, "org-b")] == [1, 2, 3]
    assert [e["seq"] for e in events(db_url, "org-c")] == [1]
    with psycopg.connect(db_url) as c:
        counters = dict(c.execute("SELECT organization_id, last_seq FROM agent_activity_counters").fetchall())
    assert counters == {"org-a": 3, "org-b": 3, "org-c": 1}


def test_writes_in_one_transaction_each_carry_their_own_data(db_url: str, listener: psycopg.Connection[Any]) -> None:
    run_psql(
        db_url,
        """BEGIN;
           SELECT agent_activity_start(organization_id => 'org-1', agent_type => 'executor',
                                       input_data => '{"n": 0}') AS id \\gset
           SELECT agent_activity_progress(id => :'id', message => 'a', progress => 10);
           SELECT agent_activity_progress(id => :'id', message => 'b', progress => 20);
           UPDATE agent_activities SET message = 'c' WHERE id = :'id';
           SELECT agent_activity_complete(id => :'id', output_data => '{"done": 1}');
           COMMIT;""",
    )
    assert receive(listener, 5) == [{"org": "org-1", "seq": n} for n in range(1, 6)]
    log = events(db_url)
    assert [(e["type"], e["payload"]["data"]) for e in log] == [
        ("agent_started", {"inputData": {"n": 0}, "metadata": None}),
        ("agent_progress", {"message": "a", "progress": 10}),
        ("agent_progress", {"message": "b", "progress": 20}),
        ("agent_progress", {"message": "c", "progress": 20}),
        ("agent_completed", {"outputData": {"done": 1}}),
    ]


def test_rolled_back_writes_leave_no_event_no_gap_and_no_notify(db_url: str, listener: psycopg.Connection[Any]) -> None:
    run_psql(
        db_url,
        """BEGIN;
           SELECT agent_activity_start(organization_id => 'org-1', agent_type => 'lost');
           ROLLBACK;""",
    )
    assert_no_notify(listener)
    assert events(db_url) == []

    run_psql(
        db_url,
        """BEGIN;
           SELECT agent_activity_start(organization_id => 'org-1', agent_type => 'executor') AS id \\gset
           SAVEPOINT s;
           SELECT agent_activity_progress(id => :'id', message => 'undone', progress => 50);
           ROLLBACK TO SAVEPOINT s;
           SELECT agent_activity_progress(id => :'id', message => 'kept', progress => 60);
           COMMIT;""",
    )
    assert receive(listener, 2) == [{"org": "org-1", "seq": 1}, {"org": "org-1", "seq": 2}]
    log = events(db_url)
    assert [(e["seq"], e["type"], e["payload"]["agentType"]) for e in log] == [
        (1, "agent_started", "executor"),
        (2, "agent_progress", "executor"),
    ]
    assert log[1]["payload"]["data"] == {"message": "kept", "progress": 60}


def test_events_and_notify_appear_only_at_commit(
    db_url: str, listener: psycopg.Connection[Any], conn: psycopg.Connection[dict[str, Any]]
) -> None:
    with psycopg.connect(db_url) as writer:
        writer.execute("SELECT agent_activity_start(organization_id => 'org-1', agent_type => 'executor')")
        assert_no_notify(listener)
        assert events(db_url) == []
        writer.commit()
    assert receive(listener, 1) == [{"org": "org-1", "seq": 1}]
    assert len(events(db_url)) == 1


@pytest.mark.parametrize(
    "org",
    [
        'org "quoted" \\ back',
        "org-é-漢字-🙂",
        "o" * 200,
        "org\nnew line\ttab",
    ],
    ids=["quotes", "unicode", "200-chars", "control-chars"],
)
def test_notify_payload_is_json_for_any_organization_id(
    db_url: str, listener: psycopg.Connection[Any], conn: psycopg.Connection[dict[str, Any]], org: str
) -> None:
    conn.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'executor')", (org,))
    assert receive(listener, 1) == [{"org": org, "seq": 1}]
    assert events(db_url)[0]["payload"]["organizationId"] == org


def test_1mb_input_data_via_sql_function(
    db_url: str, listener: psycopg.Connection[Any], conn: psycopg.Connection[dict[str, Any]]
) -> None:
    big = {"prompt": "x" * (1024 * 1024), "files": [f"src/file_{i}.py" for i in range(1000)]}
    assert len(json.dumps(big)) > 1024 * 1024
    row = conn.execute(
        "SELECT agent_activity_start(organization_id => 'org-big', agent_type => 'executor', input_data => %s) AS id",
        (Jsonb(big),),
    ).fetchone()
    assert row is not None
    activity_id = str(row["id"])
    conn.execute("SELECT agent_activity_complete(id => %s, output_data => %s)", (activity_id, Jsonb(big)))

    notes = receive(listener, 2)
    assert notes == [{"org": "org-big", "seq": 1}, {"org": "org-big", "seq": 2}]
    log = events(db_url)
    assert log[0]["payload"]["data"]["inputData"] == big
    assert log[1]["payload"]["data"]["outputData"] == big
    assert activity_row(db_url, activity_id)["input_data"] == big


def test_1mb_input_data_via_psql(db_url: str, listener: psycopg.Connection[Any]) -> None:
    blob = "y" * (1024 * 1024)
    activity_id = psql_value(
        db_url,
        f"""SELECT agent_activity_start(organization_id => 'org-big', agent_type => 'executor',
                   input_data => '{{"blob": "{blob}"}}');""",
    )
    assert receive(listener, 1) == [{"org": "org-big", "seq": 1}]
    assert events(db_url)[0]["payload"]["data"]["inputData"] == {"blob": blob}
    assert activity_row(db_url, activity_id)["input_data"] == {"blob": blob}


def test_database_maintains_timestamps(db_url: str, conn: psycopg.Connection[dict[str, Any]]) -> None:
    created = conn.execute(
        "INSERT INTO agent_activities (organization_id, agent_type) VALUES ('org-1', 'executor') RETURNING *"
    ).fetchone()
    assert created is not None
    assert created["updated_at"] == created["created_at"]
    assert created["completed_at"] is None
    activity_id = created["id"]

    moved = conn.execute(
        "UPDATE agent_activities SET created_at = '2000-01-01', message = 'm' WHERE id = %s RETURNING *",
        (activity_id,),
    ).fetchone()
    assert moved is not None
    assert moved["created_at"] == created["created_at"], "created_at cannot be rewritten"
    assert moved["updated_at"] > created["updated_at"]
    assert moved["completed_at"] is None

    done = conn.execute(
        "UPDATE agent_activities SET status = 'completed' WHERE id = %s RETURNING *", (activity_id,)
    ).fetchone()
    assert done is not None
    assert done["completed_at"] is not None
    assert done["completed_at"] >= moved["updated_at"]

    finished_at_insert = conn.execute(
        "INSERT INTO agent_activities (organization_id, agent_type, status, error)"
        " VALUES ('org-1', 'executor', 'failed', 'x') RETURNING *"
    ).fetchone()
    assert finished_at_insert is not None
    assert finished_at_insert["completed_at"] is not None


def test_agent_activity_json_has_the_api_shape(conn: psycopg.Connection[dict[str, Any]]) -> None:
    conn.execute(
        """SELECT agent_activity_start(organization_id => 'org-1', agent_type => 'executor',
                                       agent_name => 'n', metadata => '{"k": 1}')"""
    )
    row = conn.execute("SELECT agent_activity_json(a) AS j FROM agent_activities AS a").fetchone()
    assert row is not None
    activity = row["j"]
    assert set(activity) == {
        "id",
        "organizationId",
        "sessionId",
        "agentType",
        "agentName",
        "category",
        "status",
        "progress",
        "message",
        "inputData",
        "outputData",
        "error",
        "metadata",
        "createdAt",
        "updatedAt",
        "completedAt",
    }
    assert activity["organizationId"] == "org-1"
    assert activity["status"] == "running"
    assert activity["metadata"] == {"k": 1}
    assert activity["completedAt"] is None
    parse_ts(activity["createdAt"])
    parse_ts(activity["updatedAt"])


# --- state rules: each rejection leaves everything as it was -----------------------------------------


@pytest.fixture
def activities(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, str]:
    """One running, one completed and one failed activity, plus an id that does not exist."""

    def start() -> str:
        row = conn.execute(
            "SELECT agent_activity_start(organization_id => 'org-rules', agent_type => 'executor',"
            " input_data => '{\"a\": 1}') AS id"
        ).fetchone()
        assert row is not None
        return str(row["id"])

    running, completed, failed = start(), start(), start()
    conn.execute("SELECT agent_activity_progress(id => %s, message => 'half', progress => 50)", (running,))
    conn.execute("SELECT agent_activity_complete(id => %s, output_data => '{\"r\": 1}')", (completed,))
    conn.execute("SELECT agent_activity_fail(id => %s, error => 'bad')", (failed,))
    return {"running": running, "completed": completed, "failed": failed, "unknown": str(uuid.uuid4())}


def database_state(conn: psycopg.Connection[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any]]:
    rows = conn.execute("SELECT to_jsonb(a) AS r FROM agent_activities AS a ORDER BY id").fetchall()
    log = conn.execute("SELECT to_jsonb(e) AS r FROM agent_activity_events AS e ORDER BY 1").fetchall()
    counters = conn.execute("SELECT to_jsonb(c) AS r FROM agent_activity_counters AS c ORDER BY 1").fetchall()
    return rows, log, counters


INSERT_CREATED_AT = "INSERT INTO agent_activities (organization_id, agent_type, created_at) VALUES ('org-rules', 'x', "

REJECTIONS = [
    # (id, sql, sqlstate, constraint name, words in the message)
    (
        "progress-150-via-function",
        "SELECT agent_activity_progress(id => %(running)s, progress => 150)",
        "23514",
        "agent_activities_progress_range",
        "between 0 and 100",
    ),
    (
        "progress-negative-via-function",
        "SELECT agent_activity_progress(id => %(running)s, message => 'x', progress => -1)",
        "23514",
        "agent_activities_progress_range",
        "between 0 and 100",
    ),
    (
        "progress-150-via-update",
        "UPDATE agent_activities SET progress = 150 WHERE id = %(running)s",
        "23514",
        "agent_activities_progress_range",
        "agent_activities_progress_range",
    ),
    (
        "progress-150-via-insert",
        "INSERT INTO agent_activities (organization_id, agent_type, progress) VALUES ('org-rules', 'x', 150)",
        "23514",
        "agent_activities_progress_range",
        "agent_activities_progress_range",
    ),
    (
        "progress-on-completed-via-function",
        "SELECT agent_activity_progress(id => %(completed)s, message => 'more', progress => 10)",
        "PA001",
        None,
        "already completed",
    ),
    (
        "progress-on-failed-via-function",
        "SELECT agent_activity_progress(id => %(failed)s, progress => 10)",
        "PA001",
        None,
        "already failed",
    ),
    (
        "progress-on-completed-via-update",
        "UPDATE agent_activities SET progress = 10 WHERE id = %(completed)s",
        "PA001",
        None,
        "already completed",
    ),
    (
        "message-on-failed-via-update",
        "UPDATE agent_activities SET message = 'again' WHERE id = %(failed)s",
        "PA001",
        None,
        "already failed",
    ),
    (
        "completed-to-running-via-update",
        "UPDATE agent_activities SET status = 'running' WHERE id = %(completed)s",
        "PA001",
        None,
        "cannot become running",
    ),
    (
        "failed-to-completed-via-update",
        "UPDATE agent_activities SET status = 'completed' WHERE id = %(failed)s",
        "PA001",
        None,
        "cannot become completed",
    ),
    (
        "complete-completed-via-function",
        "SELECT agent_activity_complete(id => %(completed)s)",
        "PA001",
        None,
        "already completed",
    ),
    (
        "fail-completed-via-function",
        "SELECT agent_activity_fail(id => %(completed)s, error => 'late')",
        "PA001",
        None,
        "already completed",
    ),
    (
        "complete-failed-via-function",
        "SELECT agent_activity_complete(id => %(failed)s)",
        "PA001",
        None,
        "already failed",
    ),
    (
        "unknown-status-via-update",
        "UPDATE agent_activities SET status = 'paused' WHERE id = %(running)s",
        "23514",
        "agent_activities_status_valid",
        "agent_activities_status_valid",
    ),
    (
        "unknown-status-via-insert",
        "INSERT INTO agent_activities (organization_id, agent_type, status) VALUES ('org-rules', 'x', 'done')",
        "23514",
        "agent_activities_status_valid",
        "agent_activities_status_valid",
    ),
    (
        "null-status-via-update",
        "UPDATE agent_activities SET status = NULL WHERE id = %(running)s",
        "23502",
        None,
        "status",
    ),
    (
        "unknown-id-progress",
        "SELECT agent_activity_progress(id => %(unknown)s, message => 'x', progress => 10)",
        "PA002",
        None,
        "does not exist",
    ),
    (
        "unknown-id-complete",
        "SELECT agent_activity_complete(id => %(unknown)s)",
        "PA002",
        None,
        "does not exist",
    ),
    (
        "unknown-id-fail",
        "SELECT agent_activity_fail(id => %(unknown)s, error => 'x')",
        "PA002",
        None,
        "does not exist",
    ),
    (
        "change-organization-via-update",
        "UPDATE agent_activities SET organization_id = 'org-other' WHERE id = %(running)s",
        "PA003",
        None,
        "cannot change",
    ),
    (
        "change-organization-of-finished-via-update",
        "UPDATE agent_activities SET organization_id = 'org-other' WHERE id = %(completed)s",
        "PA003",
        None,
        "cannot change",
    ),
    (
        "change-id-via-update",
        "UPDATE agent_activities SET id = %(unknown)s WHERE id = %(running)s",
        "PA003",
        None,
        "cannot change",
    ),
    (
        "empty-organization-via-function",
        "SELECT agent_activity_start(organization_id => '', agent_type => 'executor')",
        "23514",
        "agent_activities_organization_id_valid",
        "agent_activities_organization_id_valid",
    ),
    (
        "organization-over-200-chars-via-function",
        "SELECT agent_activity_start(organization_id => repeat('o', 201), agent_type => 'executor')",
        "23514",
        "agent_activities_organization_id_valid",
        "agent_activities_organization_id_valid",
    ),
    (
        "empty-agent-type-via-function",
        "SELECT agent_activity_start(organization_id => 'org-rules', agent_type => '')",
        "23514",
        "agent_activities_agent_type_valid",
        "agent_activities_agent_type_valid",
    ),
    (
        "null-agent-type-via-function",
        "SELECT agent_activity_start(organization_id => 'org-rules', agent_type => NULL)",
        "23502",
        None,
        "agent_type",
    ),
    (
        "created-at-infinity-via-insert",
        INSERT_CREATED_AT + "'infinity')",
        "23514",
        "agent_activities_created_at_range",
        "agent_activities_created_at_range",
    ),
    (
        "created-at-minus-infinity-via-insert",
        INSERT_CREATED_AT + "'-infinity')",
        "23514",
        "agent_activities_created_at_range",
        "agent_activities_created_at_range",
    ),
    (
        "created-at-year-10001-via-insert",
        INSERT_CREATED_AT + "'10001-01-01')",
        "23514",
        "agent_activities_created_at_range",
        "agent_activities_created_at_range",
    ),
    (
        "created-at-4713-bc-via-insert",
        INSERT_CREATED_AT + "'4713-01-01 BC')",
        "23514",
        "agent_activities_created_at_range",
        "agent_activities_created_at_range",
    ),
    (
        "created-at-before-1970-via-insert",
        INSERT_CREATED_AT + "'1969-12-31 23:59:59+00')",
        "23514",
        "agent_activities_created_at_range",
        "agent_activities_created_at_range",
    ),
    (
        "created-at-year-2200-via-insert",
        INSERT_CREATED_AT + "'2200-01-01 00:00:00+00')",
        "23514",
        "agent_activities_created_at_range",
        "agent_activities_created_at_range",
    ),
    (
        "completed-at-infinity-via-insert",
        "INSERT INTO agent_activities (organization_id, agent_type, status, completed_at)"
        " VALUES ('org-rules', 'x', 'completed', 'infinity')",
        "23514",
        "agent_activities_completed_at_range",
        "agent_activities_completed_at_range",
    ),
    (
        "completed-at-infinity-via-update",
        "UPDATE agent_activities SET completed_at = 'infinity' WHERE id = %(running)s",
        "23514",
        "agent_activities_completed_at_range",
        "agent_activities_completed_at_range",
    ),
    (
        "completed-at-year-10001-on-completion",
        "UPDATE agent_activities SET status = 'completed', completed_at = '10001-01-01' WHERE id = %(running)s",
        "23514",
        "agent_activities_completed_at_range",
        "agent_activities_completed_at_range",
    ),
]


@pytest.mark.parametrize(
    ("sql", "sqlstate", "constraint", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in REJECTIONS],
)
def test_rejected_write_changes_nothing(
    conn: psycopg.Connection[dict[str, Any]],
    listener: psycopg.Connection[Any],
    activities: dict[str, str],
    sql: str,
    sqlstate: str,
    constraint: str | None,
    words: str,
) -> None:
    receive(listener, 6)  # the fixture's writes
    before = database_state(conn)

    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql, activities)

    error = caught.value
    assert error.sqlstate == sqlstate, error
    if sqlstate == "23514":
        assert isinstance(error, psycopg.errors.CheckViolation)
    if constraint is not None:
        assert error.diag.constraint_name == constraint
    assert words in str(error)
    assert database_state(conn) == before
    assert_no_notify(listener)


def test_rejected_write_in_a_transaction_rolls_back_the_good_writes(
    conn: psycopg.Connection[dict[str, Any]], listener: psycopg.Connection[Any], activities: dict[str, str]
) -> None:
    receive(listener, 6)
    before = database_state(conn)

    def good_then_bad() -> None:
        with conn.transaction():
            conn.execute("SELECT agent_activity_progress(id => %(running)s, progress => 70)", activities)
            conn.execute("SELECT agent_activity_progress(id => %(running)s, progress => 170)", activities)

    with pytest.raises(psycopg.errors.CheckViolation):
        good_then_bad()
    assert database_state(conn) == before
    assert_no_notify(listener)


def test_psql_writer_sees_the_sqlstate(db_url: str, activities: dict[str, str]) -> None:
    result = run_psql(
        db_url,
        f"""\\set VERBOSITY verbose
            SELECT agent_activity_progress(id => '{activities["completed"]}', progress => 10);""",
        check=False,
    )
    assert result.returncode != 0
    assert "PA001" in result.stderr
    assert "already completed" in result.stderr

    result = run_psql(
        db_url,
        f"SELECT agent_activity_progress(id => '{activities['unknown']}', progress => 10);",
        check=False,
    )
    assert result.returncode != 0
    assert "does not exist" in result.stderr


def test_timestamps_at_the_ends_of_the_range_are_accepted(conn: psycopg.Connection[dict[str, Any]]) -> None:
    for value in ("1970-01-01 00:00:00+00", "2199-12-31 23:59:59.999999+00"):
        row = conn.execute(
            "INSERT INTO agent_activities (organization_id, agent_type, created_at, status, completed_at)"
            " VALUES ('org-edge', 'x', %s, 'completed', %s) RETURNING updated_at, completed_at",
            (value, value),
        ).fetchone()
        assert row is not None


def test_a_psql_writer_sees_the_timestamp_constraint(db_url: str) -> None:
    result = run_psql(
        db_url,
        "INSERT INTO agent_activities (organization_id, agent_type, created_at) VALUES ('org-b', 'x', 'infinity');",
        check=False,
    )
    assert result.returncode != 0
    assert "agent_activities_created_at_range" in result.stderr
