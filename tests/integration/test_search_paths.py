"""search.search takes one of several paths (the walk over the newest rows, the trigram index for
finished activities with the status index for running ones, the btree indexes); whichever it takes,
the pages are exactly the rows a plain query finds, in the same order, without repeats or holes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pgactivity import search

ORG = "org-paths"

SEED = f"""
INSERT INTO agent_activities (organization_id, agent_type, agent_name, category, status, message, created_at)
SELECT CASE WHEN i % 7 = 0 THEN 'org-other' ELSE '{ORG}' END,
       (ARRAY['executor', 'planner', 'reviewer'])[1 + i % 3],
       'agent-' || (i % 5),
       CASE WHEN i % 17 = 0 THEN 'migration' ELSE (ARRAY['quick', 'visual'])[1 + i % 2] END,
       CASE WHEN i % 9 = 0 THEN 'running' WHEN i % 4 = 0 THEN 'failed' ELSE 'completed' END,
       CASE WHEN i % 13 = 0 THEN 'found the Needle_1% here' ELSE 'reading step ' || i END,
       timestamptz '2026-01-01' + (i / 3) * interval '1 minute'  -- ties on created_at: the id decides
FROM generate_series(1, 400) AS i;
"""

CASES: list[dict[str, Any]] = [
    {"text": "needle_1%"},
    {"text": "reading"},
    {"text": "nowhere"},
    {"category": "migration"},
    {"category": "quick"},
    {"text": "needle", "status": "running"},
    {"text": "needle", "status": "failed"},
    {"text": "step", "category": "visual", "agent_type": "planner"},
    {"category": "migration", "agent_name": "agent-2"},
]


def expected(url: str, filters: dict[str, Any]) -> list[str]:
    clauses = ["organization_id = %(org)s"]
    params: dict[str, Any] = {"org": ORG}
    if "text" in filters:
        clauses.append("(coalesce(agent_name, '') || ' ' || coalesce(message, '')) ILIKE %(text)s")
        params["text"] = "%" + search.like_escape(filters["text"]) + "%"
    for name, column in (("category", "category"), ("status", "status"), ("agent_type", "agent_type")):
        if name in filters:
            clauses.append(f"{column} = %({name})s")
            params[name] = filters[name]
    if "agent_name" in filters:
        clauses.append("agent_name = %(agent_name)s")
        params["agent_name"] = filters["agent_name"]
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT id::text FROM agent_activities WHERE {' AND '.join(clauses)} ORDER BY created_at DESC, id DESC",
            params,
        ).fetchall()
    return [r[0] for r in rows]


async def walk(url: str, filters: dict[str, Any], limit: int) -> list[str]:
    seen: list[str] = []
    async with AsyncConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        query = search.ActivityQuery(organization_id=ORG, limit=limit, **filters)
        while True:
            page = await search.search(pool, query)
            seen.extend(json.loads(item)["id"] for item in page.items)
            if page.next_cursor is None:
                return seen
            query = search.ActivityQuery(
                organization_id=ORG, limit=limit, cursor=search.ActivityCursor.decode(page.next_cursor), **filters
            )


@pytest.mark.parametrize(
    ("window", "rare_rows"),
    [(1, -1), (7, -1), (100_000, -1), (100_000, 10**9)],
    ids=["index-path", "both-paths", "walk-path", "estimated-rare"],
)
def test_every_path_pages_through_exactly_the_matching_rows(
    db_url: str, window: int, rare_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SEED)
    monkeypatch.setattr(search, "WALK_WINDOW", window)
    monkeypatch.setattr(search, "RARE_ROWS", rare_rows)
    for filters in CASES:
        want = expected(db_url, filters)
        for limit in (3, 50):
            assert asyncio.run(walk(db_url, filters, limit)) == want, (filters, limit)
    assert any(expected(db_url, f) for f in CASES)
