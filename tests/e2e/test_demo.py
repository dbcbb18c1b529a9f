"""`pgactivity demo` and `serve --demo` write realistic activity through the SQL API."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import psycopg

from tests.e2e.conftest import ServerFactory, pgactivity_command
from tests.e2e.sse import SSEClient

AGENT_TYPES = {"executor", "planner", "researcher"}


def rows(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def check_history(db_url: str) -> None:
    """Every activity's events tell a legal story, and nothing is left running."""
    assert rows(db_url, "SELECT count(*) FROM agent_activities WHERE status = 'running'") == [(0,)]
    assert rows(
        db_url,
        "SELECT count(*) FROM agent_activities WHERE completed_at IS NULL"
        " OR (status = 'completed' AND progress <> 100) OR (status = 'failed' AND error IS NULL)",
    ) == [(0,)]
    histories = rows(
        db_url,
        "SELECT activity_id, array_agg(type ORDER BY seq), array_agg((payload->'data'->>'progress')::int ORDER BY seq)"
        " FROM agent_activity_events GROUP BY activity_id",
    )
    for _, types, progress in histories:
        assert types[0] == "agent_started"
        assert types[-1] in ("agent_completed", "agent_failed")
        assert set(types[1:-1]) <= {"agent_progress"}
        steps = [p for p, t in zip(progress, types, strict=True) if t == "agent_progress"]
        assert steps == sorted(steps)
        assert all(0 <= p <= 100 for p in steps)
    # The log is gapless per organization.
    assert (
        rows(
            db_url,
            "SELECT organization_id FROM agent_activity_events GROUP BY organization_id"
            " HAVING count(*) <> max(seq) OR min(seq) <> 1",
        )
        == []
    )


def test_demo_writes_legal_activity_for_several_organizations(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_")}
    result = subprocess.run(
        [*pgactivity_command(), "demo", "--duration", "4", "--speed", "8", "--seed", "7"],
        env={**env, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    per_org = dict(rows(db_url, "SELECT organization_id, count(*) FROM agent_activities GROUP BY 1"))  # type: ignore[arg-type]
    assert set(per_org) == {"demo", "acme", "globex"}
    assert all(n >= 2 for n in per_org.values()), per_org
    types = {t for (t,) in rows(db_url, "SELECT DISTINCT agent_type FROM agent_activities")}
    assert types <= AGENT_TYPES
    assert len(types) >= 2
    statuses = dict(rows(db_url, "SELECT status, count(*) FROM agent_activities GROUP BY 1"))  # type: ignore[arg-type]
    assert statuses.get("completed", 0) > 0
    assert rows(db_url, "SELECT count(*) FROM agent_activity_events WHERE type = 'agent_progress'")[0][0] > 0
    assert rows(
        db_url,
        "SELECT count(*) FROM agent_activity_events WHERE type = 'agent_progress'"
        " AND payload->'data'->>'message' IS NULL",
    ) == [(0,)]
    check_history(db_url)


def test_serve_demo_streams_moving_activity_and_stops_cleanly(server_factory: ServerFactory) -> None:
    srv = server_factory(start=False)
    with srv.log_path.open("ab") as log:
        srv.proc = subprocess.Popen(
            [*pgactivity_command(), "serve", "--demo", "--port", str(srv.port)],
            env=srv.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    srv.wait_ready()
    client = SSEClient(f"{srv.base_url}/api/activity/stream", srv.token("demo")).start()
    try:
        client.wait_for(lambda c: {"agent_started", "agent_progress"} <= {e.type for e in c.live()}, timeout=30)
        assert all(e.data["organizationId"] == "demo" for e in client.live())
        assert {e.data["agentType"] for e in client.live()} <= AGENT_TYPES
    finally:
        client.stop()
    srv.stop()
    assert srv.proc.returncode == 0, srv.log()
    check_history(srv.db_url)  # the shutdown failed what was still running ("demo stopped")
