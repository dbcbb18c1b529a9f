"""The query API's and the purge's SQL use indexes, on a table big enough for the planner to care.

The statements are the ones the server runs (search.ActivityQuery.statement,
the constants in search.py and retention.py), EXPLAINed with real parameters.
Set PGACTIVITY_SHOW_PLANS=1 to print the plans (the README quotes them).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgactivity import retention, search

ORGS = 20
PER_ORG = 1000
ORG = "org-7"

# 20 000 activities, 15 000 of them in ORG and the rest over 19 others: 2 % running, agent types, names and
# categories of very different frequency, one session in 50, the word "needle" in a few messages.
SEED = f"""
ALTER TABLE agent_activities DISABLE TRIGGER agent_activities_emit_event;
INSERT INTO agent_activities (organization_id, agent_type, agent_name, session_id, category, status, message,
                              created_at, completed_at)
SELECT CASE WHEN i % 4 = 0 THEN 'org-' || (i % {ORGS}) ELSE '{ORG}' END,
       CASE WHEN i % 97 = 0 THEN 'rare-type' ELSE (ARRAY['executor', 'planner'])[1 + i % 2] END,
       CASE WHEN i % 89 = 0 THEN 'rare-name' ELSE 'agent-' || (i % 13) END,
       'ses-' || (i % 50),
       CASE WHEN i % 83 = 0 THEN 'rare-category' ELSE (ARRAY['ultrabrain', 'quick', 'visual'])[1 + i % 3] END,
       CASE WHEN i % 50 = 0 THEN 'running' WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END,
       CASE WHEN i % 499 = 0 THEN 'found the needle' ELSE 'step ' || i || ' of the long haul' END,
       timestamptz '2026-01-01' + i * interval '1 minute',
       CASE WHEN i % 50 = 0 THEN NULL ELSE timestamptz '2026-01-01' + i * interval '1 minute' END
FROM generate_series(1, {ORGS * PER_ORG}) AS i;
ALTER TABLE agent_activities ENABLE TRIGGER agent_activities_emit_event;

INSERT INTO agent_activity_events (organization_id, seq, activity_id, type, payload, created_at)
SELECT a.organization_id, row_number() OVER (PARTITION BY a.organization_id ORDER BY a.created_at, a.id),
       a.id, 'agent_started', '{{}}', a.created_at
FROM agent_activities AS a;
INSERT INTO agent_activity_counters (organization_id, last_seq)
SELECT organization_id, max(seq) FROM agent_activity_events GROUP BY organization_id;
"""


@pytest.fixture(scope="module")
def big_db(pg_server: Any, pg_template: Any) -> Iterator[str]:
    """One database with 20 000 activities (and as many events) for the tests of this module, which only read."""
    name = f"pgactivity_plans_{uuid.uuid4().hex[:8]}"
    admin = pg_server.url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        template = sql.Identifier(pg_template.template_dbname)
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), template))
    url = pg_server.url(name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SEED)
            # VACUUM also moves the GIN index's pending entries into the index proper.
            conn.execute("VACUUM ANALYZE agent_activities")
            conn.execute("VACUUM ANALYZE agent_activity_events")
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def explain(url: str, statement: str | sql.Composable, params: dict[str, Any]) -> dict[str, Any]:
    query = sql.SQL(statement) if isinstance(statement, str) else statement
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params).fetchone()
        if os.environ.get("PGACTIVITY_SHOW_PLANS"):
            text = conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
            print("\n" + "\n".join(r[0] for r in text))
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def indexes_used(plan: dict[str, Any]) -> set[str]:
    return {n["Index Name"] for n in nodes(plan) if "Index Name" in n}


def seq_scanned(plan: dict[str, Any]) -> set[str]:
    return {n["Relation Name"] for n in nodes(plan) if n["Node Type"] == "Seq Scan"}


def search_plan(url: str, **filters: Any) -> dict[str, Any]:
    statement, params = search.ActivityQuery(organization_id=ORG, **filters).statement()
    return explain(url, statement, params)


CASES: list[tuple[dict[str, Any], str]] = [
    ({}, "agent_activities_org_created_idx"),
    (
        {"cursor": search.ActivityCursor(datetime(2026, 1, 5, tzinfo=UTC), uuid.UUID(int=0))},
        "agent_activities_org_created_idx",
    ),
    ({"status": "running"}, "agent_activities_org_status_created_idx"),
    ({"agent_type": "rare-type"}, "agent_activities_org_type_created_idx"),
    ({"session_id": "ses-7"}, "agent_activities_org_session_idx"),
    ({"agent_name": "rare-name"}, "agent_activities_org_name_created_idx"),
    ({"text": "needle"}, "agent_activities_search_trgm_idx"),
    ({"category": "rare-category"}, "agent_activities_search_trgm_idx"),
]


@pytest.mark.parametrize(("filters", "index"), CASES, ids=[c[1] + "-" + ",".join(c[0]) for c in CASES])
def test_search_uses_an_index(big_db: str, filters: dict[str, Any], index: str) -> None:
    plan = search_plan(big_db, **filters)
    assert index in indexes_used(plan), json.dumps(plan, indent=1)
    assert "agent_activities" not in seq_scanned(plan)


@pytest.mark.parametrize(
    "filters", [{"text": "needle"}, {"category": "quick", "since": datetime(2026, 1, 2, tzinfo=UTC)}]
)
def test_the_walk_for_common_values_reads_the_newest_rows_by_index(big_db: str, filters: dict[str, Any]) -> None:
    """q and category look at the newest rows first (search.search): one index range, never the table."""
    walk, window, params = search.ActivityQuery(organization_id=ORG, **filters).walk_statement()
    for statement in (walk, window):
        plan = explain(big_db, statement, params)
        assert "agent_activities_org_created_idx" in indexes_used(plan), json.dumps(plan, indent=1)
        assert "agent_activities" not in seq_scanned(plan)


def test_detail_events_and_purge_use_indexes(big_db: str) -> None:
    some = {"id": uuid.uuid4(), "org": ORG, "after": 0, "limit": 201}
    assert "agent_activities_pkey" in indexes_used(explain(big_db, search.SQL_ACTIVITY, some))
    assert "agent_activity_events_activity_idx" in indexes_used(explain(big_db, search.SQL_ACTIVITY_EVENTS, some))

    cutoff = {"cutoff": datetime(2026, 1, 2, tzinfo=UTC), "batch": 5000}
    old_plan = explain(big_db, retention.SQL_OLD_EVENTS, cutoff)
    assert "agent_activity_events_pkey" in indexes_used(old_plan)
    assert "agent_activity_events" not in seq_scanned(old_plan)
    prefix_plan = explain(big_db, retention.SQL_PURGE_EVENTS, {"org": ORG, "upto": 500})
    assert "agent_activity_events_pkey" in indexes_used(prefix_plan)
    assert "agent_activity_events" not in seq_scanned(prefix_plan)
    activities_plan = explain(big_db, retention.SQL_PURGE_ACTIVITIES, cutoff)
    assert "agent_activities_finished_idx" in indexes_used(activities_plan)
    assert "agent_activities" not in seq_scanned(activities_plan)
