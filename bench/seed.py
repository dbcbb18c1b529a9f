"""Realistic activities: what the organizations hold before a benchmark starts, and what the writer writes.

A row looks like an agent run of a coding assistant: a prompt of ~150 characters,
a list of files, a summary and token counts in output_data, a model and run id in
metadata; about 1.2 KB as row_to_json, 0.77 KB as the API's JSON. Values are spread the way a real organization's
are, so that each search filter has a common and a rare value:

  status      completed (most), failed (1 in 23), running (the 3 newest, and 1 in 5000: stuck runs)
  agent_type  5 types; 'auditor' 1 in 2000
  agent_name  40 names (type-0 .. type-7); 'auditor-nightly' 1 in 2000
  session_id  8 activities per session
  category    4 categories; 'migration' 1 in 1000
  message     'reading <file> ...' 9 in 10, 'writing tests for <file>' 1 in 10,
              'retrying after a deadlock in <file>' 1 in 500
  created_at  evenly spaced, the newest at `end_at`

The SQL generates the rows inside PostgreSQL (generate_series), the same statement
for pgactivity's database and the typical app's: both hold the same table. With
`attachment` > 0, input_data also carries a string of that many bytes (hex, not
compressible into nothing, as a file or tool output would be).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

PROMPT = (
    "add keyset pagination to the orders endpoint, keep the existing filters, and test the empty page, "
    "the last page and an invalid cursor."
)
SUMMARY = (
    "Added keyset pagination on (created_at, id) to GET /orders with an opaque cursor; the status and "
    "customer filters still apply. Tests cover the empty page, the last page and a tampered cursor."
)
COMMON_WORD = "reading"
RARE_WORD = "deadlock"

ACTIVITIES = """
INSERT INTO agent_activities (organization_id, session_id, agent_type, agent_name, category, status, progress,
                              message, input_data, output_data, metadata, error, created_at, completed_at)
SELECT org,
       'ses-' || org || '-' || (g / 8),
       agent_type,
       CASE WHEN agent_type = 'auditor' THEN 'auditor-nightly' ELSE agent_type || '-' || (g %% 8) END,
       CASE WHEN g %% 1000 = 500 THEN 'migration'
            ELSE (ARRAY['ultrabrain', 'quick', 'visual', 'writing'])[1 + (g * 3) %% 4] END,
       status,
       CASE status WHEN 'completed' THEN 100 ELSE (g * 7) %% 100 END,
       CASE WHEN g %% 500 = 7 THEN 'retrying after a deadlock in ' || file
            WHEN g %% 10 < 9 THEN 'reading ' || file || ' (' || (g %% 40) || ' of 40 files)'
            ELSE 'writing tests for ' || file END,
       jsonb_build_object('prompt', 'Implement ticket ' || g || ': ' || %(prompt)s::text,
                          'repo', 'acme/service-' || (g %% 7),
                          'files', jsonb_build_array(file, 'tests/test_module_' || (g %% 300) || '.py'),
                          'maxTokens', 8000)
         || CASE WHEN %(attachment)s::int > 0 THEN jsonb_build_object('attachment', (
                SELECT string_agg(md5(g || ':' || i), '') FROM generate_series(1, %(attachment)s::int / 32) AS i))
            ELSE '{}'::jsonb END,
       CASE status WHEN 'completed' THEN jsonb_build_object(
           'summary', %(summary)s::text, 'filesChanged', 1 + g %% 9, 'linesAdded', g %% 400, 'linesRemoved', g %% 120,
           'tokens', jsonb_build_object('input', 10000 + g %% 5000, 'output', 1000 + g %% 2000),
           'tests', jsonb_build_object('passed', 40 + g %% 20, 'failed', 0)) END,
       jsonb_build_object('model', (ARRAY['claude-sonnet-4', 'claude-opus-4', 'gpt-4.1'])[1 + g %% 3],
                          'runId', md5(org || g), 'attempt', 1 + g %% 3, 'host', 'worker-' || (g %% 12)),
       CASE status WHEN 'failed' THEN 'tool call timed out after 120 s while reading ' || file END,
       created_at,
       CASE WHEN status <> 'running' THEN created_at + make_interval(secs => 5 + g %% 600) END
FROM (
    SELECT g,
           CASE WHEN %(orgs)s::int = 1 THEN %(org)s::text ELSE %(org)s::text || '-' || (g %% %(orgs)s::int) END AS org,
           CASE WHEN g %% 2000 = 1999 THEN 'auditor'
                ELSE (ARRAY['executor', 'planner', 'reviewer', 'researcher', 'tester'])[1 + g %% 5] END AS agent_type,
           CASE WHEN g %% 5000 = 4999 OR g > %(total)s::bigint - 3 THEN 'running'
                WHEN g %% 23 = 0 THEN 'failed' ELSE 'completed' END AS status,
           'src/app/module_' || (g %% 300) || '.py' AS file,
           %(end_at)s::timestamptz - make_interval(secs => (%(total)s::bigint - g) * %(step)s::float8) AS created_at
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
) AS s
"""


def activities(
    conn: psycopg.Connection[Any],
    org: str,
    count: int,
    *,
    end_at: datetime | str = "now",
    span_s: float = 7 * 86400,
    first: int = 1,
    total: int | None = None,
    orgs: int = 1,
    attachment: int = 0,
) -> None:
    """Insert activities first..first+count-1 of an organization that holds `total` (default: count),
    spread evenly over `span_s` seconds up to end_at, in one statement. With orgs > 1 the rows go
    to organizations `<org>-0` .. `<org>-<orgs-1>` instead."""
    total = total if total is not None else first + count - 1
    conn.execute(
        ACTIVITIES,
        {
            "org": org,
            "orgs": orgs,
            "first": first,
            "last": first + count - 1,
            "total": total,
            "end_at": end_at,
            "step": span_s / max(1, total),
            "prompt": PROMPT,
            "summary": SUMMARY,
            "attachment": attachment,
        },
    )


def prefill(url: str, organizations: list[str], per_org: int) -> float:
    """Every organization gets `per_org` activities of the last week, one transaction per
    organization; returns the mean size of a row as JSON, in bytes."""
    with psycopg.connect(url, autocommit=True) as conn:
        for org in organizations:
            with conn.transaction():
                activities(conn, org, per_org)
        conn.execute("VACUUM ANALYZE agent_activities")
        row = conn.execute("SELECT avg(length(row_to_json(a)::text)) FROM agent_activities AS a").fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def new_activity(org: str, i: int, token: str) -> tuple[str, str, str, str, str, str]:
    """What the writer starts: (agent_type, agent_name, session_id, category, input_data, metadata),
    the token in metadata."""
    agent_type = ("executor", "planner", "reviewer", "researcher", "tester")[i % 5]
    input_data = {
        "prompt": f"Implement ticket {i}: {PROMPT}",
        "repo": f"acme/service-{i % 7}",
        "files": [f"src/app/module_{i % 300}.py", f"tests/test_module_{i % 300}.py"],
        "maxTokens": 8000,
    }
    metadata = {"bench": token, "model": "claude-sonnet-4", "attempt": 1, "host": f"worker-{i % 12}"}
    return (
        agent_type,
        f"{agent_type}-{i % 8}",
        f"ses-{org}-live-{i // 8}",
        ("ultrabrain", "quick", "visual", "writing")[i % 4],
        json.dumps(input_data),
        json.dumps(metadata),
    )
