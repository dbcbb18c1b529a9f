"""Row e: server memory per idle SSE connection, and whether it is returned when they leave.

For each system and N, a fresh server (pinned): 50 clients connect and leave (warm
up), then RSS ("start", VmRSS from /proc/<pid>/status); N clients connect and stay
idle (pgactivity's have each received their snapshot of the newest 100 of their
organization's 300 activities, the typical app's have their response headers); 3 s
later RSS again: (idle - start) / N per connection. Then all N leave; once the
server has closed their sockets (no ESTABLISHED connection left on its port)
and 3 s more, RSS "after", compared with "start". Kernel socket buffers are not in
RSS. Organizations and data as in rows a-d.
"""

from __future__ import annotations

import time
from typing import Any

import meters
import targets
from cluster import PGACTIVITY, TYPICAL
from context import STREAM_ORGS, SYSTEMS, Context
from fleet import SNAPSHOT_MARKER, Fleet
from machine import load1
from report import Row, simple_table
from servers import Server

COLUMNS = (
    "system",
    "clients",
    "connect_s",
    "kb_received_each",
    "rss_start_mb",
    "rss_idle_mb",
    "kb_per_connection",
    "rss_after_mb",
    "after_vs_start_pct",
)


def run(ctx: Context, keys: set[str]) -> list[Row]:
    counts = (1000, 5000)
    load_before = load1()
    durability = ctx.durability(False)
    results = [_measure(ctx, kind, n) for kind in SYSTEMS for n in counts]
    by = {(r["system"], r["clients_asked"]): r for r in results}

    def cell(kind: str) -> str:
        kb = " / ".join(f"{by[(kind, n)]['kb_per_connection']:.0f}" for n in counts)
        after = ", ".join(f"{by[(kind, n)]['after_vs_start_pct']:+.0f} %" for n in counts)
        got = by[(kind, counts[0])]["kb_received_each"]
        return f"{kb} KB ({got:.0f} KB received each); after they leave: {after} of start"

    worst_kb = max(by[(PGACTIVITY, n)]["kb_per_connection"] for n in counts)
    worst_after = max(by[(PGACTIVITY, n)]["after_vs_start_pct"] for n in counts)
    met = worst_kb <= targets.IDLE_KB and worst_after <= 100 * targets.IDLE_RETURN
    row = Row(
        "e",
        cell(TYPICAL),
        cell(PGACTIVITY),
        met,
        f"up to {worst_kb:.0f} KB per connection, RSS after leaving {worst_after:+.0f} % of start",
        conditions=(
            f"{ctx.prefill_conditions()}; {durability}; a fresh server per N; clients in 1 (1000) or 2 (5000) processes"
        ),
        details=simple_table(results, COLUMNS),
        numbers={"runs": results},
        load=f"{load_before} -> {load1()}",
    )
    return [row]


def _measure(ctx: Context, kind: str, n: int) -> dict[str, Any]:
    url = ctx.stream_database(kind)
    marker = SNAPSHOT_MARKER if kind == PGACTIVITY else None
    with Server(kind, url, ctx.cluster.workdir, ctx.layout.server).start() as server:
        warm = Fleet([server.port], STREAM_ORGS, 50, ready_marker=marker, first_alone=kind == TYPICAL)
        warm.wait_ready()
        time.sleep(0.5)
        warm.stop()
        meters.wait_until(lambda: meters.established(server.port) == 0, 60)
        time.sleep(2)
        start = server.rss()
        fleet = Fleet(
            [server.port], STREAM_ORGS, n, procs=1 if n <= 1000 else 2, ready_marker=marker, first_alone=kind == TYPICAL
        )
        connected = fleet.wait_ready()
        time.sleep(3)
        idle = server.rss()
        received = fleet.stop()
        closed = meters.wait_until(lambda: meters.established(server.port) == 0, 60)
        time.sleep(3)
        after = server.rss()
    ready = max(1, connected["ready"])
    row = {
        "system": kind,
        "clients_asked": n,
        "clients": connected["ready"],
        "connect_s": connected["seconds"],
        "kb_received_each": sum(c.nbytes for c in received.clients) / max(1, len(received.clients)) / 1024,
        "rss_start_mb": start / 2**20,
        "rss_idle_mb": idle / 2**20,
        "kb_per_connection": (idle - start) / 1024 / ready,
        "rss_after_mb": after / 2**20,
        "after_vs_start_pct": 100 * (after - start) / start,
        "sockets_closed": closed,
    }
    ctx.say(
        f"(e) {kind} {n} idle clients: {row['kb_per_connection']:.1f} KB each, RSS {row['rss_start_mb']:.0f} -> "
        f"{row['rss_idle_mb']:.0f} -> {row['rss_after_mb']:.0f} MB after they left"
    )
    return row
