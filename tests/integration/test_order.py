"""The event log of one organization is gapless and follows commit order.

This is what makes Last-Event-ID replay exact (design.md §1, "The event log and
its order"): a client that saw seq N has seen everything committed before N.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

ORG = "org-order"


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("LISTEN agent_activity")
        yield conn


def notified(listen: psycopg.Connection[Any], count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Exactly `count` notifications as {org, seq} (an inline event is dropped here)."""
    got = [json.loads(n.payload) for n in listen.notifies(timeout=timeout, stop_after=count)]
    for note in got:
        note.pop("event", None)
        note.pop("at", None)
    assert len(got) == count, f"expected {count} notifications, got {len(got)}"
    assert [n.payload for n in listen.notifies(timeout=0.2)] == []
    return got


def event_log(url: str, org: str = ORG) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT seq, type, payload FROM agent_activity_events WHERE organization_id = %s ORDER BY seq",
            (org,),
        ).fetchall()


def marker_of(event: dict[str, Any]) -> str:
    """The writer's tag: in metadata for a start, in the message for a progress."""
    data = event["payload"]["data"]
    if event["type"] == "agent_started":
        return str(data["metadata"]["tx"])
    return str(data["message"])


@dataclass
class Tx:
    markers: list[str]
    issued: float = 0.0  # monotonic time COMMIT was sent
    returned: float = 0.0  # monotonic time COMMIT returned
    seqs: list[int] = field(default_factory=list)


@dataclass
class WriterResult:
    committed: list[Tx] = field(default_factory=list)
    rolled_back: list[Tx] = field(default_factory=list)
    error: BaseException | None = None


def run_writer(url: str, name: str, kind: str, transactions: int, start: threading.Barrier) -> WriterResult:
    """One connection writing `transactions` transactions for ORG.

    kind: "holder" keeps each transaction open a few ms to 100 ms before COMMIT,
    "quick" commits at once, "rollback" mostly rolls back.
    """
    result = WriterResult()
    rng = random.Random(name)
    try:
        with psycopg.connect(url) as conn:
            committed_id: str | None = None  # an activity this writer knows exists
            start.wait(timeout=30)
            for i in range(transactions):
                current = committed_id
                markers: list[str] = []
                writes = 2 if kind == "holder" and rng.random() < 0.3 else 1
                for j in range(writes):
                    marker = f"{name}-{i}-{j}"
                    markers.append(marker)
                    if current is None or rng.random() < 0.3:
                        row = conn.execute(
                            "SELECT agent_activity_start(organization_id => %s, agent_type => 'executor',"
                            " metadata => %s)",
                            (ORG, Jsonb({"tx": marker})),
                        ).fetchone()
                        assert row is not None
                        current = str(row[0])
                    else:
                        cur = conn.execute(
                            "UPDATE agent_activities SET message = %s, progress = %s WHERE id = %s",
                            (marker, rng.randint(0, 100), current),
                        )
                        assert cur.rowcount == 1
                if kind == "holder":
                    time.sleep(rng.uniform(0.002, 0.1))
                elif kind == "rollback":
                    time.sleep(rng.uniform(0.0, 0.02))
                tx = Tx(markers)
                if kind == "rollback" and (i == 0 or rng.random() < 0.75):
                    conn.rollback()
                    result.rolled_back.append(tx)
                    continue
                tx.issued = time.monotonic()
                conn.commit()
                tx.returned = time.monotonic()
                committed_id = current
                result.committed.append(tx)
                if kind == "quick":
                    time.sleep(rng.uniform(0.0, 0.01))
    except BaseException as exc:
        result.error = exc
    return result


def test_concurrent_writers_get_gapless_seqs_in_commit_order(db_url: str, listener: psycopg.Connection[Any]) -> None:
    plan = [(f"h{n}", "holder", 18) for n in range(8)]
    plan += [(f"q{n}", "quick", 25) for n in range(7)]
    plan += [("rb", "rollback", 60)]
    assert len(plan) == 16
    barrier = threading.Barrier(len(plan))
    results: dict[str, WriterResult] = {}

    def work(name: str, kind: str, count: int) -> None:
        results[name] = run_writer(db_url, name, kind, count, barrier)

    threads = [threading.Thread(target=work, args=spec, name=spec[0]) for spec in plan]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    elapsed = time.monotonic() - started
    for name, res in results.items():
        assert res.error is None, f"writer {name} failed: {res.error!r}"

    committed = [tx for res in results.values() for tx in res.committed]
    rolled_back = [tx for res in results.values() for tx in res.rolled_back]
    writes = sum(len(tx.markers) for tx in committed)
    assert len(committed) >= 300
    assert len(rolled_back) >= 30

    # The stream: one NOTIFY per write, seq strictly increasing by 1.
    notes = notified(listener, writes)
    assert {n["org"] for n in notes} == {ORG}
    assert [n["seq"] for n in notes] == list(range(1, writes + 1))

    # The log: exactly 1..N, every committed write once, no rolled-back write.
    log = event_log(db_url)
    assert [e["seq"] for e in log] == list(range(1, writes + 1))
    seq_of = {marker_of(e): e["seq"] for e in log}
    assert len(seq_of) == writes
    for tx in committed:
        tx.seqs = [seq_of[m] for m in tx.markers]
        # All the writes of one transaction get consecutive seqs, in statement order.
        assert tx.seqs == list(range(tx.seqs[0], tx.seqs[0] + len(tx.seqs)))
    lost = [m for tx in rolled_back for m in tx.markers if m in seq_of]
    assert lost == []

    # Commit order: if S's COMMIT returned before L sent its COMMIT, seq(S) < seq(L).
    by_return = sorted(committed, key=lambda tx: tx.returned)
    returned_at = [tx.returned for tx in by_return]
    highest_so_far: list[int] = []
    for tx in by_return:
        highest_so_far.append(max(tx.seqs[-1], highest_so_far[-1] if highest_so_far else 0))
    pairs = 0
    for late in committed:
        before = bisect.bisect_left(returned_at, late.issued)
        if before:
            pairs += before
            assert highest_so_far[before - 1] < late.seqs[0], "a later commit got a smaller seq"
    assert pairs > len(committed) * 10, "the writers hardly overlapped; the test proves little"

    assert elapsed < 20


def test_open_transaction_does_not_block_and_commits_with_a_later_seq(
    db_url: str, listener: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url) as slow, psycopg.connect(db_url, autocommit=True) as fast:
        fast.execute("SET lock_timeout = '2s'")
        slow.execute(
            "SELECT agent_activity_start(organization_id => %s, agent_type => 'slow')", (ORG,)
        )  # transaction stays open
        fast.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'fast')", (ORG,))
        assert notified(listener, 1) == [{"org": ORG, "seq": 1}]
        slow.commit()
    assert notified(listener, 1) == [{"org": ORG, "seq": 2}]
    assert [(e["seq"], e["payload"]["agentType"]) for e in event_log(db_url)] == [(1, "fast"), (2, "slow")]


def test_organizations_do_not_wait_for_each_other(db_url: str, listener: psycopg.Connection[Any]) -> None:
    """A commit in progress for org A (its organization lock held) holds up org A only."""
    with (
        psycopg.connect(db_url) as committing,
        psycopg.connect(db_url, autocommit=True) as other_org,
        psycopg.connect(db_url) as same_org,
    ):
        committing.execute("SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'first')")
        committing.commit()
        notified(listener, 1)
        # Stand-in for a transaction in the middle of its commit: it holds org-a's lock, the one
        # the emit trigger takes before it touches the counter (see the README).
        committing.execute("SELECT pg_advisory_xact_lock(hashtextextended('org-a', 7146))")

        other_org.execute("SET lock_timeout = '2s'")
        other_org.execute("SELECT agent_activity_start(organization_id => 'org-b', agent_type => 'free')")
        assert notified(listener, 1) == [{"org": "org-b", "seq": 1}]

        same_org.execute("SET lock_timeout = '200ms'")
        same_org.execute("SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'blocked')")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            same_org.commit()  # the deferred trigger waits for org-a's lock at commit
        committing.rollback()

        # The failed commit left no event and no gap.
        same_org.execute("SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'second')")
        same_org.commit()
    assert notified(listener, 1) == [{"org": "org-a", "seq": 2}]
    assert [(e["seq"], e["payload"]["agentType"]) for e in event_log(db_url, "org-a")] == [
        (1, "first"),
        (2, "second"),
    ]
    with psycopg.connect(db_url) as conn:
        agent_types = [r[0] for r in conn.execute("SELECT agent_type FROM agent_activities ORDER BY agent_type")]
    assert agent_types == ["first", "free", "second"]


def test_repeatable_read_writer_racing_on_one_organization_can_retry(
    db_url: str, listener: psycopg.Connection[Any]
) -> None:
    """The documented edge: a REPEATABLE READ writer may get a serialization error; a retry works."""
    with psycopg.connect(db_url) as rr, psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'before')", (ORG,))
        rr.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        rr.execute("SELECT count(*) FROM agent_activities")  # takes the snapshot
        other.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'racer')", (ORG,))
        rr.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'rr')", (ORG,))
        with pytest.raises(psycopg.errors.SerializationFailure):
            rr.commit()
        rr.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'rr')", (ORG,))
        rr.commit()
    assert [n["seq"] for n in notified(listener, 3)] == [1, 2, 3]
    assert [(e["seq"], e["payload"]["agentType"]) for e in event_log(db_url)] == [
        (1, "before"),
        (2, "racer"),
        (3, "rr"),
    ]


def test_writers_queued_on_one_organization_leave_its_counter_one_page(db_url: str) -> None:
    """Writers of a busy organization wait on an advisory lock, not on the counter row.

    Waiting on the row keeps its page pinned, so PostgreSQL cannot prune the
    row's old versions: the one-row counter grew to 17-25 pages in 5 s under 32
    writers, and throughput fell with every writer added.
    """
    writers, per_writer = 16, 150
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                start.wait()
                for _ in range(per_writer):
                    conn.execute("SELECT agent_activity_start(organization_id => %s, agent_type => 'busy')", (ORG,))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with psycopg.connect(db_url) as conn:
        last_seq, pages = conn.execute(
            "SELECT (SELECT last_seq FROM agent_activity_counters WHERE organization_id = %s),"
            " pg_relation_size('agent_activity_counters') / current_setting('block_size')::int",
            (ORG,),
        ).fetchone() or (None, None)
    assert last_seq == writers * per_writer
    assert pages <= 2, f"the counter table grew to {pages} pages for one row"
