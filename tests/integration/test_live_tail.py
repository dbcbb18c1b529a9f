"""The listener and the log tail on a real PostgreSQL, without the HTTP server.

Inline and by-reference events interleaved by concurrent writers reach the
hub exactly once and in order; a notification dropped on purpose is repaired
from the log; a transaction of thousands of events arrives whole.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgactivity.events import Filters, LogEvent
from pgactivity.hub import Hub
from pgactivity.listener import Listener, Notification
from pgactivity.log_tail import LogTail
from pgactivity.store import Store


@dataclass
class DropOne:
    """A handler in front of the tail that loses one notification, as a flaky network would."""

    tail: LogTail
    drop_seq: int
    dropped: list[Notification] = field(default_factory=list)

    def on_notification(self, note: Notification) -> None:
        if note.seq == self.drop_seq and not self.dropped:
            self.dropped.append(note)
            return
        self.tail.on_notification(note)

    def on_resync(self) -> None:
        self.tail.on_resync()


@asynccontextmanager
async def live(db_url: str, org: str, *, drop_seq: int | None = None) -> AsyncIterator[tuple[Hub, LogTail, list]]:
    """A running listener + tail + hub with one subscribed client of org; yields what it receives."""
    pool = AsyncConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False)
    await pool.open()
    hub = Hub(max_bytes=1 << 30, max_events=1 << 20)
    received: list[LogEvent] = []
    tail = LogTail(Store(pool), lambda events: (received.extend(events), hub.publish(events)), hub.has_clients)
    listener = Listener(db_url, ping_seconds=1)
    front = DropOne(tail, drop_seq) if drop_seq is not None else tail
    listener.subscribe(front)
    hub.subscribe(org, Filters())
    await tail.follow(org)
    tasks = [asyncio.create_task(listener.run()), asyncio.create_task(tail.run())]
    while not listener.connected:
        await asyncio.sleep(0.01)
    try:
        yield hub, tail, received
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()


async def until(predicate: object, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def log_texts(url: str, org: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT seq, payload::text FROM agent_activity_events WHERE organization_id = %s ORDER BY seq", (org,)
        ).fetchall()
    return [(int(s), str(t)) for s, t in rows]


def write(url: str, org: str, count: int, seed: int, start: threading.Barrier) -> None:
    """Starts and progress updates, some too large to ride in their NOTIFY."""
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        start.wait(10)
        running: list[str] = []
        for i in range(count):
            blob = "x" * rng.choice((10, 10, 10, 9000))  # one in four is sent by reference
            if running and rng.random() < 0.5:
                conn.execute(
                    "SELECT agent_activity_progress(id => %s, message => %s)",
                    (rng.choice(running), f"{seed}-{i}{blob}"),
                )
            else:
                row = conn.execute(
                    "SELECT agent_activity_start(organization_id => %s, agent_type => 'w', input_data => %s::jsonb)",
                    (org, json.dumps({"w": seed, "i": i, "blob": blob})),
                ).fetchone()
                assert row is not None
                running.append(str(row[0]))


def test_inline_and_by_reference_events_from_concurrent_writers_arrive_once_in_order(db_url: str) -> None:
    org = "org-mix"
    writers, per_writer = 4, 60

    async def body() -> tuple[list[LogEvent], LogTail]:
        async with live(db_url, org) as (_hub, tail, received):
            start = threading.Barrier(writers)
            threads = [threading.Thread(target=write, args=(db_url, org, per_writer, n, start)) for n in range(writers)]
            for t in threads:
                t.start()
            await asyncio.to_thread(lambda: [t.join(60) for t in threads])
            await until(lambda: len(received) >= writers * per_writer)
            await asyncio.sleep(0.2)  # anything more would be a repeat
            return list(received), tail

    received, tail = asyncio.run(body())
    log = log_texts(db_url, org)
    assert [e.seq for e in received] == [seq for seq, _ in log] == list(range(1, writers * per_writer + 1))
    assert [e.json for e in received] == [text for _, text in log]  # the very bytes of the log
    assert tail.inline > 0
    assert tail.reads > 1


def test_a_dropped_notification_is_repaired_from_the_log(db_url: str) -> None:
    org = "org-drop"

    async def body() -> tuple[list[int], int]:
        async with live(db_url, org, drop_seq=3) as (_hub, tail, received):
            with psycopg.connect(db_url, autocommit=True) as conn:
                for _ in range(5):
                    conn.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'x')", (org,))
            await until(lambda: len(received) >= 5)
            await asyncio.sleep(0.2)
            return [e.seq for e in received], tail.reads

    seqs, reads = asyncio.run(body())
    assert seqs == [1, 2, 3, 4, 5]
    assert reads >= 2  # the follow, and the repair when seq 4 came after 2


def test_a_dropped_last_notification_is_found_by_the_safety_read(db_url: str) -> None:
    org = "org-last"

    async def body() -> list[int]:
        async with live(db_url, org, drop_seq=2) as (_hub, _tail, received):
            with psycopg.connect(db_url, autocommit=True) as conn:
                for _ in range(2):
                    conn.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'x')", (org,))
            await until(lambda: len(received) >= 2)  # nothing follows seq 2: only the periodic read finds it
            return [e.seq for e in received]

    assert asyncio.run(body()) == [1, 2]


def test_a_transaction_of_5000_events_arrives_whole(db_url: str) -> None:
    org = "org-big-tx"

    async def body() -> list[int]:
        async with live(db_url, org) as (_hub, _tail, received):
            with psycopg.connect(db_url) as conn:
                conn.execute(
                    "INSERT INTO agent_activities (organization_id, agent_type) "
                    "SELECT %s, 'import' FROM generate_series(1, 5000)",
                    (org,),
                )
                conn.commit()
            await until(lambda: len(received) >= 5000)
            await asyncio.sleep(0.2)
            return [e.seq for e in received]

    assert asyncio.run(body()) == list(range(1, 5001))
