"""Row j: one transaction inserting N rows (an import, a backfill, a batch agent).

One `INSERT INTO agent_activities ... SELECT ... FROM generate_series(1, N)` of
realistic rows (seed.py), autocommit, so the statement and its commit (where
pgactivity's deferred triggers run) are one transaction. N = 5k, 20k, 40k and 200k
rows for one organization, and 20k rows over 1,000 organizations; for both systems,
each on a fresh clone of the write rows' templates (see bench_writes.py).

Each insert has a time cap: when it passes it, a second connection cancels the
statement (pg_cancel_backend, which also stops deferred triggers running at commit)
and the row says "> cap", so a quadratic cost cannot make the run take hours.
After a pgactivity insert that finished, the event log is checked: for every
organization, seqs 1..n without a gap.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

import seed
import targets
from bench_writes import PGA_TEMPLATE, TYPICAL_TEMPLATE, _templates
from cluster import PGACTIVITY, TYPICAL
from context import Context
from machine import load1
from report import Row, ratio, simple_table

SIZES = (5_000, 20_000, 40_000, 200_000)
SPREAD = (20_000, 1_000)  # rows, organizations
CHECK_SEQS = """
SELECT count(*), count(*) FILTER (WHERE n <> last OR n <> distinct_seqs)
FROM (SELECT organization_id, count(*) AS n, max(seq) AS last, count(DISTINCT seq) AS distinct_seqs
      FROM agent_activity_events GROUP BY organization_id) AS per_org
"""


def run(ctx: Context, keys: set[str]) -> list[Row]:
    cap = 30.0 if ctx.quick else 120.0
    load_before = load1()
    durability = ctx.durability(True)
    _templates(ctx, ("start", "insert"))
    cases = [(n, 1) for n in SIZES] + [SPREAD]
    results: list[dict[str, Any]] = []
    for kind in (TYPICAL, PGACTIVITY):
        for n, orgs in cases:
            results.append(_measure(ctx, kind, n, orgs, cap))
            r = results[-1]
            ctx.say(f"(j) {kind} {n} rows over {orgs} organization(s): {_time(r)} {r.get('seqs', '')}")
    by = {(r["system"], r["rows"], r["orgs"]): r for r in results}

    def cell(kind: str) -> str:
        single = " / ".join(_time(by[(kind, n, 1)]) for n in SIZES)
        spread = _time(by[(kind, *SPREAD)])
        return f"{single}; 20k over 1,000 orgs: {spread}"

    ours, theirs = by[(PGACTIVITY, 200_000, 1)], by[(TYPICAL, 200_000, 1)]
    factor = ratio(ours["seconds"], theirs["seconds"]) if ours["finished"] else float("inf")
    per_row = [by[(PGACTIVITY, n, 1)] for n in SIZES if by[(PGACTIVITY, n, 1)]["finished"]]
    growth = ratio(per_row[-1]["us_per_row"], per_row[0]["us_per_row"]) if len(per_row) > 1 else float("nan")
    gapless = all(r.get("seqs") in ("gapless", None) for r in results if r["system"] == PGACTIVITY and r["finished"])
    shape = f"us per row grows {growth:.1f}x from 5k to {per_row[-1]['rows'] // 1000}k" if len(per_row) > 1 else ""
    why = (
        f"200k: {'> cap' if not ours['finished'] else f'{factor:.1f}x'} the typical app's {theirs['seconds']:.2f} s"
        f" (at most {targets.BULK_FACTOR:g}x); {shape}; seqs {'gapless' if gapless else 'NOT gapless'}"
    )
    return [
        Row(
            "j",
            cell(TYPICAL),
            cell(PGACTIVITY),
            ours["finished"] and factor <= targets.BULK_FACTOR and gapless,
            why,
            conditions=f"one INSERT ... SELECT per transaction, no listener; {durability}; cap {cap:g} s per insert",
            details=simple_table(results, ("system", "rows", "orgs", "seconds", "us_per_row", "finished", "seqs")),
            numbers={"runs": results, "cap_s": cap},
            load=f"{load_before} -> {load1()}",
        )
    ]


def _time(r: dict[str, Any]) -> str:
    return f"{r['seconds']:.2f} s" if r["finished"] else f"> {r['cap']:g} s"


def _measure(ctx: Context, kind: str, n: int, orgs: int, cap: float) -> dict[str, Any]:
    url = ctx.cluster.clone("bulk_run", PGA_TEMPLATE if kind == PGACTIVITY else TYPICAL_TEMPLATE)
    out: dict[str, Any] = {"system": kind, "rows": n, "orgs": orgs, "cap": cap}
    try:
        ctx.cluster.checkpoint()
        with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url, autocommit=True) as canceller:
            pid = conn.info.backend_pid
            timer = threading.Timer(cap, lambda: canceller.execute("SELECT pg_cancel_backend(%s)", (pid,)))
            t0 = time.monotonic()
            timer.start()
            try:
                seed.activities(conn, "org-bulk", n, orgs=orgs)
                out["finished"] = True
            except psycopg.errors.QueryCanceled:
                out["finished"] = False
            finally:
                timer.cancel()
            out["seconds"] = time.monotonic() - t0
            out["us_per_row"] = 1e6 * out["seconds"] / n if out["finished"] else float("nan")
            if kind == PGACTIVITY and out["finished"]:
                row = conn.execute(CHECK_SEQS).fetchone()
                assert row is not None
                out["seqs"] = "gapless" if row[1] == 0 and row[0] == orgs else f"{row[1]} of {row[0]} orgs with gaps"
    finally:
        ctx.cluster.drop("bulk_run")
    return out
