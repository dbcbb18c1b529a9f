"""retention.purge on a real database: what goes, what stays, one purger at a time, concurrent writers."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import psycopg
import pytest

from pgactivity import retention
from tests.helpers import run_psql


def org_seqs(url: str, org: str) -> tuple[list[int], int]:
    """The seqs left in an organization's log, and its counter."""
    with psycopg.connect(url) as conn:
        seqs = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM agent_activity_events WHERE organization_id = %s ORDER BY seq", (org,)
            )
        ]
        row = conn.execute("SELECT last_seq FROM agent_activity_counters WHERE organization_id = %s", (org,)).fetchone()
    return seqs, (row[0] if row else 0)


def backdate_events(url: str, org: str, upto: int, days: int = 40) -> None:
    run_psql(
        url,
        f"UPDATE agent_activity_events SET created_at = now() - interval '{days} days' "
        f"WHERE organization_id = '{org}' AND seq <= {upto}",
    )


def test_purge_deletes_old_finished_activities_and_old_events_only(db_url: str) -> None:
    run_psql(
        db_url,
        """
        INSERT INTO agent_activities (organization_id, agent_type, status, created_at, completed_at) VALUES
            ('org-r', 'old-done', 'completed', now() - interval '40 days', now() - interval '40 days'),
            ('org-r', 'old-done', 'completed', now() - interval '40 days', now() - interval '39 days'),
            ('org-r', 'old-failed', 'failed', now() - interval '40 days', now() - interval '35 days'),
            ('org-s', 'old-done', 'completed', now() - interval '50 days', now() - interval '45 days'),
            ('org-r', 'old-running', 'running', now() - interval '40 days', NULL),
            ('org-r', 'finished-lately', 'completed', now() - interval '40 days', now() - interval '1 day'),
            ('org-r', 'new-done', 'completed', now(), now());
        SELECT agent_activity_start('org-r', 'new-running');
        """,
    )
    backdate_events(db_url, "org-r", 5)
    backdate_events(db_url, "org-s", 1)
    before = {org: org_seqs(db_url, org)[1] for org in ("org-r", "org-s")}

    result = asyncio.run(retention.purge(db_url, 30, batch_size=2))

    assert result == retention.PurgeResult(activities=4, events=6)
    with psycopg.connect(db_url) as conn:
        left = Counter(r[0] for r in conn.execute("SELECT agent_type FROM agent_activities"))
    assert left == {"old-running": 1, "finished-lately": 1, "new-done": 1, "new-running": 1}
    assert org_seqs(db_url, "org-r") == ([6, 7], 7)
    assert org_seqs(db_url, "org-s") == ([], 1)  # the counter stays: the next event is still seq 2
    assert {org: org_seqs(db_url, org)[1] for org in ("org-r", "org-s")} == before
    run_psql(db_url, "SELECT agent_activity_start('org-s', 'after-purge')")
    assert org_seqs(db_url, "org-s") == ([2], 2)

    assert asyncio.run(retention.purge(db_url, 30)) == retention.PurgeResult()


def test_purge_removes_a_prefix_of_the_log_even_if_timestamps_disagree(db_url: str) -> None:
    """A clock that stepped back must not punch a hole in the middle of the log."""
    run_psql(db_url, "SELECT agent_activity_start('org-c', 't') FROM generate_series(1, 6)")
    backdate_events(db_url, "org-c", 3)
    run_psql(db_url, "UPDATE agent_activity_events SET created_at = now() WHERE organization_id = 'org-c' AND seq = 2")
    asyncio.run(retention.purge(db_url, 30))
    assert org_seqs(db_url, "org-c") == ([4, 5, 6], 6)


def test_one_purge_at_a_time(db_url: str) -> None:
    run_psql(db_url, "SELECT agent_activity_start('org-l', 't') FROM generate_series(1, 3)")
    backdate_events(db_url, "org-l", 3)
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (retention.LOCK_KEY,))
        assert asyncio.run(retention.purge(db_url, 30)) == retention.PurgeResult(skipped=True)
        assert org_seqs(db_url, "org-l") == ([1, 2, 3], 3)
        other.execute("SELECT pg_advisory_unlock(%s)", (retention.LOCK_KEY,))
    assert asyncio.run(retention.purge(db_url, 30)).events == 3


def test_purge_rejects_a_non_positive_age(db_url: str) -> None:
    for days in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            asyncio.run(retention.purge(db_url, days))


OLD_PER_ORG = 600
WRITER_ORGS = ("org-w1", "org-w2")


def test_purge_with_concurrent_writers_loses_no_unpurged_event(db_url: str) -> None:
    # 600 old finished activities (and their 600 events) in each organization.
    for org in WRITER_ORGS:
        run_psql(
            db_url,
            f"INSERT INTO agent_activities (organization_id, agent_type, status, created_at, completed_at) "
            f"SELECT '{org}', 'old', 'completed', now() - interval '40 days', now() - interval '40 days' "
            f"FROM generate_series(1, {OLD_PER_ORG})",
        )
        backdate_events(db_url, org, OLD_PER_ORG)

    stop = threading.Event()
    purging = threading.Event()
    threads_orgs = [org for org in WRITER_ORGS for _ in range(2)]
    loops = [0] * len(threads_orgs)  # one slot per thread: no shared counter
    overlapped = [0] * len(threads_orgs)
    errors: list[BaseException] = []

    def writer(index: int, org: str) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute("SELECT agent_activity_start(%s, 'writer')", (org,)).fetchone()
                    assert row is not None
                    conn.execute("SELECT agent_activity_progress(%s, 'working', 50)", (row[0],))
                    conn.execute("SELECT agent_activity_complete(%s)", (row[0],))
                    loops[index] += 1
                    if purging.is_set():
                        overlapped[index] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i, org)) for i, org in enumerate(threads_orgs)]
    for thread in threads:
        thread.start()
    try:
        purging.set()
        result = asyncio.run(retention.purge(db_url, 30, batch_size=40, pause=0.01))
        purging.clear()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    assert sum(overlapped) > 0, "the writers did not overlap the purge; nothing was tested"
    written = Counter[str]()
    for org, count in zip(threads_orgs, loops, strict=True):
        written[org] += count

    assert result.events == OLD_PER_ORG * len(WRITER_ORGS)
    assert result.activities == OLD_PER_ORG * len(WRITER_ORGS)
    for org in WRITER_ORGS:
        seqs, last = org_seqs(db_url, org)
        # Exactly the old prefix went; every event written meanwhile is there, in one gapless run.
        assert last == OLD_PER_ORG + 3 * written[org]
        assert seqs == list(range(OLD_PER_ORG + 1, last + 1))
        with psycopg.connect(db_url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE agent_type = 'writer'), count(*) FROM agent_activities "
                "WHERE organization_id = %s",
                (org,),
            ).fetchone()
        assert row == (written[org], written[org])
