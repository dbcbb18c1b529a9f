"""Row f: 12 new clients at once on an organization whose 60 newest activities hold 2 MB each.

The organization holds 160 activities: 100 ordinary ones, then 60 whose input_data
carries a 2 MiB string (written one per transaction, as an agent attaching a big
tool output would). A fresh pgactivity server (pinned) is warmed up by a few clients
of another organization; then its RSS is read and its peak RSS (VmHWM) reset, and 12
clients of the big organization connect at the same moment. Each client counts the
bytes it receives until its snapshot frame is complete. The row gives the bytes each
received and the server's RSS growth: peak (VmHWM) minus the RSS before they came.

The typical app has no snapshot (and its NOTIFY trigger rejects a row over 8000
bytes of JSON), so it has nothing to measure here.
"""

from __future__ import annotations

import time

import psycopg

import meters
import seed
import targets
from cluster import PGACTIVITY
from context import Context
from fleet import SNAPSHOT_MARKER, Fleet
from machine import load1
from report import Row
from servers import Server

BIG_ORG = "org-big"
SMALL_ORG = "org-small"
CLIENTS = 12
BIG = 60
ORDINARY = 100
ATTACHMENT = 2 * 2**20


def run(ctx: Context, keys: set[str]) -> list[Row]:
    load_before = load1()
    durability = ctx.durability(False)
    url = ctx.cluster.create("big_snapshot", PGACTIVITY)
    _fill(url)
    ctx.say(f"(f) {BIG_ORG}: {ORDINARY} ordinary activities, then {BIG} of {ATTACHMENT / 2**20:g} MiB")
    with Server(PGACTIVITY, url, ctx.cluster.workdir, ctx.layout.server).start() as server:
        warm = Fleet([server.port], [SMALL_ORG], 5, ready_marker=SNAPSHOT_MARKER)
        warm.wait_ready()
        warm.stop()
        meters.wait_until(lambda: meters.established(server.port) == 0, 60)
        time.sleep(2)
        start = server.rss()
        peak_known = True
        try:
            meters.reset_peak_rss(server.pid)
        except OSError:
            peak_known = False  # VmHWM then counts from the server's start: an upper bound
        t0 = time.monotonic()
        fleet = Fleet(
            [server.port], [BIG_ORG], CLIENTS, ready_marker=SNAPSHOT_MARKER, scan_tokens=False, concurrency=CLIENTS
        )
        connected = fleet.wait_ready(timeout=900)
        seconds = time.monotonic() - t0
        peak = meters.peak_rss_bytes(server.pid)
        at_ready = server.rss()
        received = fleet.stop()
        meters.wait_until(lambda: meters.established(server.port) == 0, 60)
        time.sleep(3)
        after = server.rss()
    sizes = [c.nbytes / 2**20 for c in received.clients]
    growth = (peak - start) / 2**20
    numbers = {
        "clients_ready": connected["ready"],
        "clients_failed": connected["failed"],
        "connections_lost": received.lost,
        "mb_received_min": min(sizes, default=float("nan")),
        "mb_received_max": max(sizes, default=float("nan")),
        "seconds_until_all_had_their_snapshot": seconds,
        "rss_start_mb": start / 2**20,
        "rss_peak_mb": peak / 2**20,
        "rss_when_all_ready_mb": at_ready / 2**20,
        "rss_after_they_left_mb": after / 2**20,
        "peak_measured_from_reset": peak_known,
    }
    ctx.say(f"(f) {numbers}")
    mb_each = f"{numbers['mb_received_max']:.0f} MB" if sizes else "nothing"
    return [
        Row(
            "f",
            "- (no snapshot)",
            f"{mb_each} to each, RSS +{growth:,.0f} MB",
            growth < targets.BIG_SNAPSHOT_MB,
            f"peak RSS +{growth:,.0f} MB (limit {targets.BIG_SNAPSHOT_MB:g} MB)",
            conditions=(
                f"{CLIENTS} clients connect together; {BIG_ORG} holds {ORDINARY} activities, then {BIG} of "
                f"{ATTACHMENT / 2**20:g} MiB; growth = VmHWM - RSS before; {durability}"
            ),
            details=[
                f"{connected['ready']} of {CLIENTS} clients got their whole snapshot within {seconds:.1f} s "
                f"({connected['failed']} failed, {received.lost} lost); received "
                f"{numbers['mb_received_min']:.1f}-{numbers['mb_received_max']:.1f} MB each",
                f"server RSS: {numbers['rss_start_mb']:.0f} MB before, peak {numbers['rss_peak_mb']:.0f} MB, "
                f"{numbers['rss_when_all_ready_mb']:.0f} MB when all were ready, "
                f"{numbers['rss_after_they_left_mb']:.0f} MB 3 s after they left",
            ],
            numbers=numbers,
            load=f"{load_before} -> {load1()}",
        )
    ]


def _fill(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        seed.activities(conn, SMALL_ORG, 20)
        with conn.transaction():
            seed.activities(conn, BIG_ORG, ORDINARY, total=ORDINARY + BIG)
        for i in range(BIG):
            seed.activities(conn, BIG_ORG, 1, first=ORDINARY + 1 + i, total=ORDINARY + BIG, attachment=ATTACHMENT)
        conn.execute("VACUUM ANALYZE agent_activities")
