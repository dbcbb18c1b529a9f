"""Retention end to end: `pgactivity purge` and the server's periodic purge, with streams open."""

from __future__ import annotations

import os
import subprocess
import time

import psycopg

from pgactivity import retention
from tests.e2e.conftest import ServerFactory, pgactivity_command
from tests.e2e.prom import scrape, value, wait_metrics
from tests.e2e.sse import SSEClient
from tests.helpers import run_psql


def purge_cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_")} | {"DATABASE_URL": db_url}
    return subprocess.run(
        [*pgactivity_command(), "purge", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def seqs(db_url: str, org: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT seq FROM agent_activity_events WHERE organization_id = %s ORDER BY seq", (org,))
        return [r[0] for r in rows]


def start_activities(db_url: str, org: str, count: int) -> None:
    run_psql(db_url, "".join(f"SELECT agent_activity_start('{org}', 'agent-{i}');\n" for i in range(count)))


def backdate(db_url: str, org: str, upto: int) -> None:
    run_psql(
        db_url,
        f"UPDATE agent_activity_events SET created_at = now() - interval '40 days' "
        f"WHERE organization_id = '{org}' AND seq <= {upto}",
    )


def test_purge_command(db_url: str) -> None:
    start_activities(db_url, "org-p", 5)
    backdate(db_url, "org-p", 3)

    for bad in ("0", "-2", "abc", "inf"):
        proc = purge_cli(db_url, "--older-than", bad)
        assert proc.returncode == 2, (bad, proc.stdout, proc.stderr)
        assert "--older-than" in proc.stderr

    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (retention.LOCK_KEY,))
        proc = purge_cli(db_url, "--older-than", "30")
        assert proc.returncode == 0, proc.stderr
        assert "another process is purging" in proc.stdout
    assert seqs(db_url, "org-p") == [1, 2, 3, 4, 5]

    proc = purge_cli(db_url, "--older-than", "30")
    assert proc.returncode == 0, proc.stderr
    assert "deleted 0 activities and 3 events older than 30 days" in proc.stdout
    assert seqs(db_url, "org-p") == [4, 5]


def test_periodic_purge_keeps_streams_exact_and_resets_purged_resumes(server_factory: ServerFactory) -> None:
    server = server_factory(env={"PGACTIVITY_RETENTION_DAYS": "30", "PGACTIVITY_RETENTION_INTERVAL_SECONDS": "1"})
    live = SSEClient(f"{server.base_url}/api/activity/stream", server.token("org-p")).start()
    try:
        live.wait_for(lambda c: len(c.events) >= 1)
        start_activities(server.db_url, "org-p", 20)
        live.wait_for(lambda c: len(c.live()) >= 20)

        # Age the first ten events: the server's next purge round deletes them, while the stream stays open.
        backdate(server.db_url, "org-p", 10)
        deadline = time.monotonic() + 60
        while seqs(server.db_url, "org-p")[0] != 11:
            assert time.monotonic() < deadline, "the periodic purge never ran"
            time.sleep(0.2)
        start_activities(server.db_url, "org-p", 20)
        live.wait_for(lambda c: len(c.live()) >= 40)
        assert live.seqs() == list(range(1, 41))

        samples = wait_metrics(
            server, lambda s: (value(s, "pgactivity_purged_rows_total", table="agent_activity_events") or 0) >= 10
        )
        assert value(samples, "pgactivity_purged_rows_total", table="agent_activities") == 0
    finally:
        live.stop()

    # Resuming from a purged seq: a reset snapshot (never a silent gap). From the edge of the purge: exact replay.
    for last_id in ("1", "9"):
        client = SSEClient(f"{server.base_url}/api/activity/stream", server.token("org-p"), last_event_id=last_id)
        client.start()
        try:
            client.wait_for(lambda c: len(c.events) >= 1)
            first = client.events[0]
            assert first.type == "snapshot", last_id
            assert first.data["reset"] is True
            assert first.seq == 40
            assert len(first.data["activities"]) == 40
        finally:
            client.stop()
    client = SSEClient(f"{server.base_url}/api/activity/stream", server.token("org-p"), last_event_id="10")
    client.start()
    try:
        client.wait_for(lambda c: len(c.events) >= 30)
        assert [e.type for e in client.events] == ["agent_started"] * 30
        assert client.seqs() == list(range(11, 41))
    finally:
        client.stop()
    assert value(scrape(server), "pgactivity_stream_snapshots_total", reset="true") == 2
    assert "background task retention died" not in server.log()
