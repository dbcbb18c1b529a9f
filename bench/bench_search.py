"""Row k: GET /api/activities in an organization of 200k activities, a page of 50.

Through the real HTTP API: a pgactivity server (pinned) on a database holding
`org-search` (200,000 activities over 60 days, seed.py's distributions: 9 in 10
messages contain "reading", 1 in 500 "deadlock") and 1,000 small organizations of
20 activities. The client is one keep-alive HTTP connection on the load CPU; a
time is from sending the request to the last byte of the response. Requests are
sequential, so the server's pool (1 connection at rest) runs them on one
connection, where psycopg prepares a statement at its 6th execution and
PostgreSQL may then switch to a generic plan.

Each query shape runs first with a rare value, several times, then with a common
one (or the other way where "rare" is the fast case), which is the order that
lets a generic plan chosen for the first value hurt the second. For q: "reading"
once, "deadlock" 12 times, then "reading" again: the row's headline number is
the last one. The rows are seeded in transactions of 2,000 (with pgactivity's
triggers) so the seeding does not depend on the bulk-insert cost of row j.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg

import seed
import targets
from cluster import PGACTIVITY
from context import Context
from machine import load1
from report import Row, ms, simple_table
from servers import Server, token_for

ORG = "org-search"
ROWS = 200_000
BATCH = 2_000
SPAN = 60 * 86400
SMALL_ORGS = 1_000
SMALL_ROWS = 20


def run(ctx: Context, keys: set[str]) -> list[Row]:
    load_before = load1()
    durability = ctx.durability(False)
    url = ctx.cluster.create("search", PGACTIVITY)
    t0 = time.monotonic()
    end_at = _fill(url)
    ctx.say(
        f"(k) {ORG}: {ROWS:,} activities and {SMALL_ORGS:,} organizations of {SMALL_ROWS}, "
        f"seeded in {time.monotonic() - t0:.0f} s"
    )
    with Server(PGACTIVITY, url, ctx.cluster.workdir, ctx.layout.server).start() as server:
        client = _Client(server.port, token_for(ORG))
        results = _queries(client, end_at)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        server_connections = int(row[0]) if row else -1
        client.close()
    for r in results:
        ctx.say(f"(k) {r['query']:<40} {r['median_ms']:8.1f} ms (max {r['max_ms']:.1f}, runs {r['runs']})")
    by = {r["query"]: r for r in results}
    after = by["q=reading, after q=deadlock x12"]["median_ms"]
    worst = max(results, key=lambda r: r["median_ms"])
    headline = (
        f"q=reading {ms(after)} (first run: {ms(by['q=reading, first']['median_ms'])}); "
        f"page 1: {ms(by['page 1']['median_ms'])}; rare word: {ms(by['q=deadlock']['median_ms'])}"
    )
    filters = [r for r in results if not r["query"].startswith(("q=", "page 1"))]
    slowest_filter = max(filters, key=lambda r: r["median_ms"])
    headline += f"; slowest filter: {slowest_filter['query']} {ms(slowest_filter['median_ms'])}"
    return [
        Row(
            "k",
            "-",
            headline,
            worst["median_ms"] <= targets.SEARCH_MS,
            f"slowest: {worst['query']} {ms(worst['median_ms'])} (limit {targets.SEARCH_MS:g} ms)",
            conditions=(
                f"real HTTP API, sequential requests on one keep-alive connection; {ROWS:,} rows in {ORG} + "
                f"{SMALL_ORGS:,} organizations of {SMALL_ROWS}; medians of each query's runs; the server had "
                f"{server_connections} connections to the database at the end; {durability}"
            ),
            details=simple_table(results, ("query", "runs", "median_ms", "max_ms", "items", "kb")),
            numbers={"queries": results, "server_connections": server_connections},
            load=f"{load_before} -> {load1()}",
        )
    ]


def _fill(url: str) -> datetime:
    end_at = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn:
        for first in range(1, ROWS + 1, BATCH):
            with conn.transaction():
                seed.activities(conn, ORG, BATCH, first=first, total=ROWS, end_at=end_at, span_s=SPAN)
        with conn.transaction():
            seed.activities(conn, "org-small", SMALL_ORGS * SMALL_ROWS, orgs=SMALL_ORGS, end_at=end_at)
        conn.execute("VACUUM ANALYZE agent_activities")
    return end_at


class _Client:
    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, params: dict[str, str]) -> tuple[float, int, bytes]:
        path = "/api/activities?" + urlencode({**params, "limit": "50"})
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = 1000 * (time.perf_counter() - t0)
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
        return elapsed, resp.status, body

    def close(self) -> None:
        self.conn.close()


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _queries(client: _Client, end_at: datetime) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    def measure(label: str, params: dict[str, str], runs: int) -> bytes:
        times, body = [], b""
        for _ in range(runs):
            elapsed, _, body = client.get(params)
            times.append(elapsed)
        items = body.count(b'"organizationId"')
        results.append(
            {
                "query": label,
                "runs": runs,
                "median_ms": statistics.median(times),
                "max_ms": max(times),
                "items": items,
                "kb": len(body) / 1024,
            }
        )
        return body

    page1 = measure("page 1", {}, 10)
    cursor = json.loads(page1)["nextCursor"]
    measure("q=reading, first", {"q": seed.COMMON_WORD}, 1)
    measure("q=deadlock", {"q": seed.RARE_WORD}, 12)
    measure("q=reading, after q=deadlock x12", {"q": seed.COMMON_WORD}, 5)
    pairs = [
        ("status", "running", "completed"),
        ("agentType", "auditor", "executor"),
        ("agentName", "auditor-nightly", "executor-3"),
        ("category", "migration", "quick"),
        ("sessionId", f"ses-{ORG}-100", f"ses-{ORG}-{ROWS // 8 - 1}"),
    ]
    for name, rare, common in pairs:
        measure(f"{name}={rare}", {name: rare}, 7)
        measure(f"{name}={common}", {name: common}, 5)
    day, month = timedelta(days=1), timedelta(days=30)
    measure("since=10 min ago", {"since": _iso(end_at - timedelta(minutes=10))}, 7)
    measure("since=1 day ago", {"since": _iso(end_at - day)}, 5)
    measure("until=59 days ago", {"until": _iso(end_at - 59 * day)}, 7)
    deep = measure("until=30 days ago", {"until": _iso(end_at - month)}, 5)
    window = {"since": _iso(end_at - month - timedelta(hours=1)), "until": _iso(end_at - month)}
    measure("since+until: 1 hour, 30 days ago", window, 5)
    measure("cursor: page 2", {"cursor": cursor}, 5)
    measure("cursor: 30 days deep", {"cursor": json.loads(deep)["nextCursor"]}, 5)
    return results
