"""Rows g-i: commits/s with pgbench, one write per transaction, durable commits, no listener.

Setups (each measurement on a fresh clone of its template database, after a CHECKPOINT):

  start     pgactivity: `SELECT agent_activity_start(...)`, the real migrations (row g)
  insert    typical app: the same values as a plain INSERT into its agent_activities
            (our first migration's table, 3 indexes, the guard trigger, a trigger that
            NOTIFYs the whole row) (row g)
  copy      pgactivity's database: an INSERT into a copy of agent_activities made with
            LIKE ... INCLUDING ALL (all its indexes, no trigger of ours) plus only the
            typical app's NOTIFY trigger (row h: what the event log, counter and deferred
            trigger cost beyond the indexes and one NOTIFY). Since migration 20261202000001
            the state rules are checked by our guard trigger rather than CHECK constraints,
            so the copy checks none of them: it is cheaper than the typical app's table,
            whose four CHECK constraints PostgreSQL re-reads at every statement
  byref     pgactivity, the same `agent_activity_start` with `pgactivity.notify_max_bytes = 0`
            set on the database: every NOTIFY carries `{org, seq}` alone, as before the event
            rode in it (row n: what the larger payload costs a write; the NOTIFY queue is
            global, so every notifying commit pays for its payload under one lock)
  progress  pgactivity: `agent_activity_progress(id, <new message>, <progress>)` on one of
            1000 running activities, picked at random (row i)
  update    typical app: the plain UPDATE of message and progress its users would write
            (row i, for reference)

Writes go to 100 organizations at random. pgbench and PostgreSQL run on the load CPU.
The measurements take turns (setups innermost, then connection counts, then rounds)
and the rows give the median of the rounds; the details give the range.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import psycopg

import pgbench
import seed
import targets
from cluster import PGACTIVITY, TYPICAL
from context import Context
from machine import load1
from report import Row, count, ratio, simple_table
from typical_app import NOTIFY_SQL

PGA_TEMPLATE = "writes_pgactivity"
RUN_DATABASE = "writes_run"  # the fresh clone each measurement runs on
TYPICAL_TEMPLATE = "writes_typical"
INPUT = (
    '{"prompt": "Implement ticket: ' + seed.PROMPT + '", "repo": "acme/service-1", '
    '"files": ["src/app/module_1.py", "tests/test_module_1.py"], "maxTokens": 8000}'
)
METADATA = '{"model": "claude-sonnet-4", "attempt": 1, "host": "worker-1"}'
VALUES = (
    f"'org-' || :org::text, 'executor', 'executor-high', 'ses-' || :s::text, 'ultrabrain', "
    f"'{INPUT}'::jsonb, '{METADATA}'::jsonb"
)
PICK_ORG = "\\set org random(1, 100)\n\\set s random(1, 100000000)\n"
PICK_RUNNING = "\\set k random(1, 1000)\n\\set r random(1, 1000000000)\n"
MESSAGE = "'reading src/app/module_' || :k::text || '.py, step ' || :r::text"
RUNNING_ID = "md5('run-' || :k::text)::uuid"

COLUMNS_SQL = "organization_id, agent_type, agent_name, session_id, category, input_data, metadata"
START_SCRIPT = PICK_ORG + f"SELECT agent_activity_start({VALUES});\n"
SCRIPTS = {
    "start": START_SCRIPT,
    "insert": PICK_ORG + f"INSERT INTO agent_activities ({COLUMNS_SQL}) VALUES ({VALUES});\n",
    "byref": START_SCRIPT,  # the same statement; the database differs (see _measure)
    "copy": PICK_ORG + f"INSERT INTO notify_activities ({COLUMNS_SQL}) VALUES ({VALUES});\n",
    "progress": PICK_RUNNING + f"SELECT agent_activity_progress({RUNNING_ID}, {MESSAGE}, :r::bigint % 101);\n",
    "update": PICK_RUNNING + f"UPDATE agent_activities SET message = {MESSAGE}, progress = :r::bigint % 101 "
    f"WHERE id = {RUNNING_ID};\n",
}
TEMPLATE_OF = {"start": PGA_TEMPLATE, "byref": PGA_TEMPLATE, "copy": PGA_TEMPLATE, "progress": PGA_TEMPLATE}
COPY_SQL = """
CREATE TABLE notify_activities (LIKE agent_activities INCLUDING ALL);
""" + NOTIFY_SQL.replace("typical_notify_activity", "notify_activities_notify").replace(
    "ON agent_activities", "ON notify_activities"
)
RUNNING_SQL = f"""
INSERT INTO agent_activities (id, {COLUMNS_SQL})
SELECT md5('run-' || k)::uuid, 'org-' || (1 + k % 100), 'executor', 'executor-high', 'ses-run-' || k, 'ultrabrain',
       '{INPUT}'::jsonb, '{METADATA}'::jsonb
FROM generate_series(1, 1000) AS k
"""
ROW_SETUPS = {
    "g": ("start", "insert"),
    "h": ("start", "copy"),
    "n": ("start", "byref"),
    "i": ("progress", "update", "start"),
}


def run(ctx: Context, keys: set[str]) -> list[Row]:
    seconds, rounds = (3.0, 1) if ctx.quick else (3.0, 7)
    setups = sorted({s for k in keys for s in ROW_SETUPS[k]}, key=list(SCRIPTS).index)
    conns = {s: (1, 4) if s in ("progress", "update") else (1, 4, 16) for s in setups}
    if "i" in keys and not keys & {"g", "h", "n"}:
        conns["start"] = (1, 4)  # row i compares with the starts at 1 and 4 connections
    load_before = load1()
    durability = ctx.durability(True)
    _templates(ctx, setups)
    scripts = {}
    for name in setups:
        scripts[name] = ctx.cluster.workdir / f"pgbench-{name}.sql"
        scripts[name].write_text(SCRIPTS[name])
    samples: dict[tuple[str, int], list[float]] = {}
    for rnd in range(rounds):
        for c in (1, 4, 16):
            for name in (s for s in setups if c in conns[s]):
                tps = _measure(ctx, name, scripts[name], c, seconds)
                samples.setdefault((name, c), []).append(tps)
                ctx.say(f"(writes) round {rnd + 1} {name:>8} {c:>2} connections: {tps:,.0f}/s")
    med = {key: statistics.median(v) for key, v in samples.items()}
    load = f"{load_before} -> {load1()}"
    conditions = (
        f"pgbench -M prepared, {seconds:g} s per measurement, median of {rounds}; {durability}; "
        "100 organizations; fresh database per measurement"
    )
    details = simple_table(
        [
            {
                "setup": name,
                "connections": c,
                "median_per_s": med[(name, c)],
                "min": min(samples[(name, c)]),
                "max": max(samples[(name, c)]),
            }
            for (name, c) in samples
        ],
        ("setup", "connections", "median_per_s", "min", "max"),
    )
    rows = []
    if "g" in keys:
        rows.append(_compare("g", med, "insert", "start", (1, 4, 16), targets.WRITES_FACTOR))
    if "h" in keys:
        rows.append(_compare("h", med, "copy", "start", (1, 4, 16), targets.NOTIFY_COPY_FACTOR))
    if "n" in keys:
        rows.append(_compare("n", med, "byref", "start", (1, 4, 16), targets.PAYLOAD_FACTOR))
    if "i" in keys:
        rows.append(_row_i(med))
    for row in rows:
        row.conditions, row.load = conditions, load
        row.numbers = {
            "median": {f"{n}/{c}": v for (n, c), v in med.items()},
            "samples": {f"{n}/{c}": v for (n, c), v in samples.items()},
        }
    rows[0].details = details
    return rows


def _templates(ctx: Context, setups: Sequence[str]) -> None:
    if any(TEMPLATE_OF.get(s) == PGA_TEMPLATE for s in setups):
        url = ctx.cluster.database(PGA_TEMPLATE, PGACTIVITY)
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('notify_activities')").fetchone() == (None,):
                conn.execute(COPY_SQL.encode())
    if any(TEMPLATE_OF.get(s, TYPICAL_TEMPLATE) == TYPICAL_TEMPLATE for s in setups):
        ctx.cluster.database(TYPICAL_TEMPLATE, TYPICAL)


def _measure(ctx: Context, name: str, script: Path, connections: int, seconds: float) -> float:
    url = ctx.cluster.clone(RUN_DATABASE, TEMPLATE_OF.get(name, TYPICAL_TEMPLATE))
    try:
        if name == "byref":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE {RUN_DATABASE} SET pgactivity.notify_max_bytes = 0")
        if name in ("progress", "update"):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(RUNNING_SQL.encode())
                conn.execute("VACUUM ANALYZE agent_activities")
        ctx.cluster.checkpoint()
        result = pgbench.run(url, script, connections, seconds, ctx.pg_bin)
        if result.failed:
            ctx.say(f"  {name}: {result.failed} failed transactions")
        return result.tps
    finally:
        ctx.cluster.drop(RUN_DATABASE)


def _cells(med: dict[tuple[str, int], float], name: str, conns: Sequence[int]) -> str:
    return " / ".join(count(med.get((name, c), float("nan"))) for c in conns)


def _compare(
    key: str, med: dict[tuple[str, int], float], theirs: str, ours: str, conns: Sequence[int], factor: float
) -> Row:
    ratios = [ratio(med.get((ours, c), float("nan")), med.get((theirs, c), float("nan"))) for c in conns]
    return Row(
        key,
        _cells(med, theirs, conns),
        _cells(med, ours, conns) + " (" + " / ".join(f"{r:.2f}" for r in ratios) + "x)",
        all(r >= factor for r in ratios),
        "ratios " + " / ".join(f"{r:.2f}" for r in ratios) + f" (at least {factor:g})",
    )


def _row_i(med: dict[tuple[str, int], float]) -> Row:
    conns = (1, 4)
    ratios = [ratio(med.get(("progress", c), float("nan")), med.get(("start", c), float("nan"))) for c in conns]
    return Row(
        "i",
        _cells(med, "update", conns) + " (plain UPDATE)",
        _cells(med, "progress", conns),
        all(r >= 1.0 for r in ratios),
        "progress ÷ start " + " / ".join(f"{r:.2f}" for r in ratios) + " (at least 1)",
    )
