"""The Python helper (design.md §4): it writes through the SQL API; the database makes the events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed

from pgactivity import (
    ActivityHandle,
    ActivityNotFound,
    ActivityTracker,
    AsyncActivityTracker,
    InvalidProgress,
    InvalidTransition,
    PgActivityError,
    ValidationError,
)

ORG = "org-123"
START = {
    "organization_id": ORG,
    "agent_type": "executor",
    "agent_name": "executor-high",
    "session_id": "ses-456",
    "category": "ultrabrain",
    "input_data": {"prompt": "Implement feature X"},
    "metadata": {"source": "slack"},
}


@pytest.fixture
def tracker(db_url: str) -> Iterator[ActivityTracker]:
    with ActivityTracker(db_url) as t:
        yield t


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("LISTEN agent_activity")
        yield conn


def notified(listen: psycopg.Connection[Any], count: int) -> list[str]:
    """The payloads as {org, seq} (without the event some of them carry inline)."""
    got = []
    for note in listen.notifies(timeout=5, stop_after=count):
        payload = json.loads(note.payload)
        payload.pop("event", None)
        payload.pop("at", None)
        got.append(json.dumps(payload))
    assert len(got) == count
    assert [n.payload for n in listen.notifies(timeout=0.1)] == []
    return got


def events(url: str) -> list[tuple[str, int, str, str, dict[str, Any]]]:
    """(organization, seq, activity id, type, data) of every event, in log order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT organization_id, seq, activity_id, type, payload FROM agent_activity_events"
            " ORDER BY organization_id, seq"
        ).fetchall()
    return [(org, seq, str(aid), typ, payload["data"]) for org, seq, aid, typ, payload in rows]


def activity(url: str, activity_id: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM agent_activities WHERE id = %s", (activity_id,)).fetchone()
    assert row is not None
    return row


def test_track_lifecycle_writes_the_events(
    db_url: str, tracker: ActivityTracker, listener: psycopg.Connection[Any]
) -> None:
    first = tracker.track_start(**START)
    assert isinstance(first, str)
    assert str(uuid.UUID(first)) == first
    tracker.track_progress(first, message="Analyzing codebase...", progress=30)
    tracker.track_progress(first, progress=60)  # message kept
    tracker.track_complete(first, output_data={"filesChanged": ["src/api/users.ts"]})
    second = tracker.track_start(organization_id=ORG, agent_type="planner")
    tracker.track_fail(second, error="timeout")

    assert [json.loads(p) for p in notified(listener, 6)] == [{"org": ORG, "seq": n} for n in range(1, 7)]
    assert events(db_url) == [
        (ORG, 1, first, "agent_started", {"inputData": START["input_data"], "metadata": START["metadata"]}),
        (ORG, 2, first, "agent_progress", {"message": "Analyzing codebase...", "progress": 30}),
        (ORG, 3, first, "agent_progress", {"message": "Analyzing codebase...", "progress": 60}),
        (ORG, 4, first, "agent_completed", {"outputData": {"filesChanged": ["src/api/users.ts"]}}),
        (ORG, 5, second, "agent_started", {"inputData": None, "metadata": None}),
        (ORG, 6, second, "agent_failed", {"error": "timeout"}),
    ]
    row = activity(db_url, first)
    assert (row["agent_name"], row["session_id"], row["category"]) == (
        "executor-high",
        "ses-456",
        "ultrabrain",
    )
    assert (row["status"], row["progress"]) == ("completed", 100)
    assert activity(db_url, second)["error"] == "timeout"


def test_track_complete_with_a_message(db_url: str, tracker: ActivityTracker) -> None:
    activity_id = tracker.track_start(organization_id=ORG, agent_type="executor")
    tracker.track_complete(activity_id, message="all done")
    row = activity(db_url, activity_id)
    assert (row["status"], row["message"], row["output_data"]) == ("completed", "all done", None)


def test_json_values_round_trip(db_url: str, tracker: ActivityTracker) -> None:
    data = {"text": 'é 漢字 "q" \\ \n', "n": 1.5, "none": None, "list": [1, [2, {"x": True}]]}
    activity_id = tracker.track_start(organization_id=ORG, agent_type="executor", input_data=data, metadata=[1, 2, 3])
    row = activity(db_url, activity_id)
    assert row["input_data"] == data
    assert row["metadata"] == [1, 2, 3]
    assert events(db_url)[0][4] == {"inputData": data, "metadata": [1, 2, 3]}


def test_1mb_input_data_via_tracker(db_url: str, tracker: ActivityTracker, listener: psycopg.Connection[Any]) -> None:
    big = {"prompt": "z" * (1024 * 1024)}
    activity_id = tracker.track_start(organization_id=ORG, agent_type="executor", input_data=big)
    (payload,) = notified(listener, 1)
    assert len(payload.encode()) < 8000
    assert json.loads(payload) == {"org": ORG, "seq": 1}
    assert events(db_url)[0][4]["inputData"] == big
    assert activity(db_url, activity_id)["input_data"] == big


def database_state(url: str) -> tuple[list[Any], list[Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT to_jsonb(a) FROM agent_activities AS a ORDER BY id").fetchall()
        log = conn.execute("SELECT to_jsonb(e) FROM agent_activity_events AS e ORDER BY 1").fetchall()
    return rows, log


def test_typed_errors(db_url: str, tracker: ActivityTracker) -> None:
    running = tracker.track_start(organization_id=ORG, agent_type="executor")
    tracker.track_progress(running, message="half", progress=50)
    done = tracker.track_start(organization_id=ORG, agent_type="executor")
    tracker.track_complete(done)
    failed = tracker.track_start(organization_id=ORG, agent_type="executor")
    tracker.track_fail(failed, error="x")
    unknown = str(uuid.uuid4())
    before = database_state(db_url)

    with pytest.raises(ActivityNotFound, match="does not exist"):
        tracker.track_progress(unknown, progress=10)
    with pytest.raises(ActivityNotFound):
        tracker.track_complete(unknown)
    with pytest.raises(ActivityNotFound):
        tracker.track_fail(unknown, error="x")

    with pytest.raises(InvalidTransition, match="already completed"):
        tracker.track_progress(done, message="more", progress=10)
    with pytest.raises(InvalidTransition):
        tracker.track_complete(done)
    with pytest.raises(InvalidTransition, match="already failed"):
        tracker.track_complete(failed)
    with pytest.raises(InvalidTransition):
        tracker.track_fail(done, error="late")

    with pytest.raises(InvalidProgress, match="between 0 and 100"):
        tracker.track_progress(running, progress=150)
    with pytest.raises(InvalidProgress):
        tracker.track_progress(running, progress=-1)
    with pytest.raises(InvalidProgress):
        tracker.track_progress(running, progress=40_000)

    with pytest.raises(ValidationError):
        tracker.track_start(organization_id="", agent_type="executor")
    with pytest.raises(ValidationError):
        tracker.track_start(organization_id="o" * 201, agent_type="executor")
    with pytest.raises(ValidationError):
        tracker.track_progress("not-a-uuid", progress=1)

    assert database_state(db_url) == before
    for exc_type in (ActivityNotFound, InvalidTransition, InvalidProgress, ValidationError):
        assert issubclass(exc_type, PgActivityError)
    assert issubclass(InvalidProgress, ValidationError)


def test_typed_errors_keep_the_driver_error_as_cause(tracker: ActivityTracker) -> None:
    with pytest.raises(ActivityNotFound) as caught:
        tracker.track_progress(str(uuid.uuid4()), progress=1)
    assert isinstance(caught.value.__cause__, psycopg.Error)
    assert caught.value.__cause__.sqlstate == "PA002"


def test_progress_beyond_int4_is_invalid_progress(tracker: ActivityTracker) -> None:
    activity_id = tracker.track_start(organization_id=ORG, agent_type="executor")
    with pytest.raises(InvalidProgress):
        tracker.track_progress(activity_id, progress=3_000_000_000)


def test_activity_context_completes_on_exit(db_url: str, tracker: ActivityTracker) -> None:
    with tracker.activity(organization_id=ORG, agent_type="executor", agent_name="ctx") as act:
        assert str(uuid.UUID(act.id)) == act.id
        act.progress("step 1", 10)
        act.progress("step 2", 20)
        act.output_data = {"result": 42}
        assert activity(db_url, act.id)["status"] == "running"
    assert [(e[3], e[4]) for e in events(db_url)] == [
        ("agent_started", {"inputData": None, "metadata": None}),
        ("agent_progress", {"message": "step 1", "progress": 10}),
        ("agent_progress", {"message": "step 2", "progress": 20}),
        ("agent_completed", {"outputData": {"result": 42}}),
    ]
    row = activity(db_url, act.id)
    assert (row["status"], row["agent_name"]) == ("completed", "ctx")


def test_activity_context_fails_with_the_exception_text_and_reraises(db_url: str, tracker: ActivityTracker) -> None:
    seen: list[ActivityHandle] = []

    def work() -> None:
        with tracker.activity(organization_id=ORG, agent_type="executor") as act:
            seen.append(act)
            act.progress("writing", 50)
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        work()
    (act,) = seen
    assert [(e[3], e[4]) for e in events(db_url)][-2:] == [
        ("agent_progress", {"message": "writing", "progress": 50}),
        ("agent_failed", {"error": "disk full"}),
    ]
    row = activity(db_url, act.id)
    assert (row["status"], row["error"]) == ("failed", "disk full")


def test_activity_context_fails_with_the_type_name_when_the_text_is_empty(
    db_url: str, tracker: ActivityTracker
) -> None:
    seen: list[ActivityHandle] = []

    def work() -> None:
        with tracker.activity(organization_id=ORG, agent_type="executor") as act:
            seen.append(act)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        work()
    assert activity(db_url, seen[0].id)["error"] == "KeyboardInterrupt"


def test_existing_pool(db_url: str, listener: psycopg.Connection[Any]) -> None:
    # A plain pool as users make them: not autocommit.
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool:
        with ActivityTracker(pool) as tracker:
            activity_id = tracker.track_start(organization_id=ORG, agent_type="executor")
            tracker.track_progress(activity_id, progress=5)
            with pytest.raises(InvalidProgress):
                tracker.track_progress(activity_id, progress=101)
            tracker.track_complete(activity_id)
        # The tracker did not close a pool it does not own.
        assert not pool.closed
        with pool.connection() as conn:
            status = conn.execute("SELECT status FROM agent_activities WHERE id = %s", (activity_id,)).fetchone()
        assert status == ("completed",)
    assert len(notified(listener, 3)) == 3
    assert [e[3] for e in events(db_url)] == ["agent_started", "agent_progress", "agent_completed"]


def test_tracker_closes_the_pool_it_made(db_url: str) -> None:
    tracker = ActivityTracker(db_url)
    tracker.track_start(organization_id=ORG, agent_type="executor")
    tracker.close()
    with pytest.raises(PoolClosed):
        tracker.track_start(organization_id=ORG, agent_type="executor")


# --- asyncio ------------------------------------------------------------------------------------------


def test_async_track_lifecycle_writes_the_events(db_url: str, listener: psycopg.Connection[Any]) -> None:
    async def scenario() -> tuple[str, str]:
        async with AsyncActivityTracker(db_url) as tracker:
            first = await tracker.track_start(**START)
            await tracker.track_progress(first, message="Analyzing codebase...", progress=30)
            await tracker.track_complete(first, output_data={"filesChanged": ["a.ts"]})
            second = await tracker.track_start(organization_id=ORG, agent_type="planner")
            await tracker.track_fail(second, error="timeout")
            return first, second

    first, second = asyncio.run(scenario())
    assert str(uuid.UUID(first)) == first
    assert [json.loads(p)["seq"] for p in notified(listener, 5)] == [1, 2, 3, 4, 5]
    assert events(db_url) == [
        (ORG, 1, first, "agent_started", {"inputData": START["input_data"], "metadata": START["metadata"]}),
        (ORG, 2, first, "agent_progress", {"message": "Analyzing codebase...", "progress": 30}),
        (ORG, 3, first, "agent_completed", {"outputData": {"filesChanged": ["a.ts"]}}),
        (ORG, 4, second, "agent_started", {"inputData": None, "metadata": None}),
        (ORG, 5, second, "agent_failed", {"error": "timeout"}),
    ]


def test_async_typed_errors(db_url: str) -> None:
    async def scenario() -> None:
        async with AsyncActivityTracker(db_url) as tracker:
            activity_id = await tracker.track_start(organization_id=ORG, agent_type="executor")
            with pytest.raises(ActivityNotFound):
                await tracker.track_progress(str(uuid.uuid4()), progress=1)
            with pytest.raises(InvalidProgress):
                await tracker.track_progress(activity_id, progress=150)
            await tracker.track_complete(activity_id)
            with pytest.raises(InvalidTransition):
                await tracker.track_progress(activity_id, progress=10)
            with pytest.raises(InvalidTransition):
                await tracker.track_fail(activity_id, error="late")

    asyncio.run(scenario())
    assert [e[3] for e in events(db_url)] == ["agent_started", "agent_completed"]


def test_async_activity_context(db_url: str) -> None:
    async def scenario() -> tuple[str, str]:
        async with AsyncActivityTracker(db_url) as tracker:
            async with tracker.activity(organization_id=ORG, agent_type="executor") as ok:
                await ok.progress("step 1", 10)
                ok.output_data = {"done": True}
            seen: list[ActivityHandle] = []

            async def work() -> None:
                async with tracker.activity(organization_id=ORG, agent_type="executor") as bad:
                    seen.append(bad)
                    await bad.progress("step 1", 10)
                    raise ValueError("bad input")

            with pytest.raises(ValueError, match="bad input"):
                await work()
            return ok.id, seen[0].id

    ok_id, bad_id = asyncio.run(scenario())
    assert [(e[2], e[3], e[4]) for e in events(db_url)] == [
        (ok_id, "agent_started", {"inputData": None, "metadata": None}),
        (ok_id, "agent_progress", {"message": "step 1", "progress": 10}),
        (ok_id, "agent_completed", {"outputData": {"done": True}}),
        (bad_id, "agent_started", {"inputData": None, "metadata": None}),
        (bad_id, "agent_progress", {"message": "step 1", "progress": 10}),
        (bad_id, "agent_failed", {"error": "bad input"}),
    ]


def test_async_existing_pool_and_lazy_open(db_url: str) -> None:
    async def scenario() -> str:
        async with AsyncConnectionPool(db_url, min_size=1, max_size=2, open=False) as pool:
            tracker = AsyncActivityTracker(pool)
            # No explicit open(): the first call opens what needs opening.
            activity_id = await tracker.track_start(organization_id=ORG, agent_type="executor")
            await tracker.track_complete(activity_id)
            await tracker.close()
            assert not pool.closed
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT status FROM agent_activities WHERE id = %s", (activity_id,))
                assert await cur.fetchone() == ("completed",)
            return activity_id

    activity_id = asyncio.run(scenario())
    assert [(e[2], e[3]) for e in events(db_url)] == [
        (activity_id, "agent_started"),
        (activity_id, "agent_completed"),
    ]


def test_async_tracker_without_context_manager(db_url: str) -> None:
    async def scenario() -> None:
        tracker = AsyncActivityTracker(db_url)
        await asyncio.gather(
            *(tracker.track_start(organization_id=f"org-{n}", agent_type="executor") for n in range(8))
        )
        await tracker.close()

    asyncio.run(scenario())
    assert sorted(e[0] for e in events(db_url)) == sorted(f"org-{n}" for n in range(8))


def test_activity_handle_can_finish_early(db_url: str, tracker: ActivityTracker) -> None:
    with tracker.activity(organization_id=ORG, agent_type="executor") as act:
        act.fail("handled: upstream said no")
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT type FROM agent_activity_events WHERE activity_id = %s ORDER BY seq", (act.id,)
        ).fetchall()
    assert [r[0] for r in rows] == ["agent_started", "agent_failed"]
