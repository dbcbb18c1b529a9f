"""Rows a-d: live delivery under a steady write load, and PostgreSQL's CPU per written event.

Per system and round: one server pinned to the server CPU; 100 clients (one
process) while the writer commits 200 starts/s (a); then 1000 clients (two
processes) while it commits 300/s (b) and then is asked for 1000/s (c). The
clients are spread evenly over the 10 prefilled organizations, so an event goes to
10 (a) or 100 (b, c) clients. The writer runs from 2 connections, one
`agent_activity_start` (typical app: INSERT) per transaction. Each phase writes
for `duration` seconds; the window starts after `warmup`. After each phase the
clients get up to 20 s to receive the backlog before the next phase starts.

(d) is PostgreSQL's CPU (postmaster, every backend including the writer's, the
server's listener/tail/pool backends, and background processes) over the window
of phases a and b, divided by the events committed in that window.

The systems take turns, round by round in alternating order, and the rows give
the median over rounds, so that a burst of load from something else on the
machine does not land on one system only.
"""

from __future__ import annotations

import statistics
import time
from itertools import count
from typing import Any

import meters
import targets
from cluster import PGACTIVITY, TYPICAL
from context import STREAM_ORGS, SYSTEMS, Context
from delivery import analyze, exactly_once, tokens_written
from fleet import SNAPSHOT_MARKER, Fleet
from machine import load1
from meters import CpuMeter
from report import Row, ms, per_s, ratio, simple_table
from servers import Server
from writer import APPLICATION_NAME as WRITER_APPLICATION
from writer import Writer, WriterSpec

PHASES = {"a": (100, 200.0), "b": (1000, 300.0), "c": (1000, 1000.0)}  # clients, writes/s
_token_bases = count(10_000_000, 10_000_000)
COLUMNS = (
    "system",
    "round",
    "clients",
    "rate",
    "writes_per_s",
    "delivered_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "undelivered",
    "duplicates",
    "cpu_server",
    "cpu_postgres",
    "cpu_clients",
    "cpu_machine",
    "pg_ms_per_event",
    "pg_writer_ms_per_event",
    "pg_idle_cpu",
    "rss_mb",
    "drain_s",
    "exact_clients",
)


def run(ctx: Context, keys: set[str]) -> list[Row]:
    if "d" in keys and not keys & {"a", "b"}:
        keys = keys | {"a"}  # d is measured inside a and b
    phases = [p for p in PHASES if p in keys]
    duration, warmup, rounds = (5.0, 1.5, 1) if ctx.quick else (10.0, 2.0, 4)
    load_before = load1()
    durability = ctx.durability(False)
    results: list[dict[str, Any]] = []
    for r in range(rounds):
        order = SYSTEMS if r % 2 == 0 else SYSTEMS[::-1]
        for kind in order:
            results += _system_round(ctx, kind, r + 1, phases, duration, warmup)
    load = f"{load_before} -> {load1()}"
    conditions = (
        f"{ctx.prefill_conditions()}; {durability}; writer: 2 connections, one start per transaction; "
        f"{duration:g} s per phase after {warmup:g} s warm-up; median of {rounds} round(s)"
    )
    med = {
        (k, p): _median([x for x in results if x["system"] == k and x["phase"] == p]) for k in SYSTEMS for p in phases
    }
    details = simple_table(sorted(results, key=lambda x: (x["phase"], x["system"], x["round"])), ("phase", *COLUMNS))
    rows = []
    if "a" in keys:
        rows.append(_row_a(med))
    if "b" in keys:
        rows.append(_row_b(med))
    if "c" in keys:
        rows.append(_row_c(med))
    if "d" in keys:
        rows.append(_row_d(med, phases))
    for row in rows:
        row.conditions, row.load = conditions, load
        used = ("a", "b") if row.key == "d" else (row.key,)
        row.numbers = {"median": {f"{k}/{p}": v for (k, p), v in med.items() if p in used}}
    rows[0].details = details + rows[0].details
    rows[0].numbers["runs"] = results
    return rows


def _system_round(
    ctx: Context, kind: str, rnd: int, phases: list[str], duration: float, warmup: float
) -> list[dict[str, Any]]:
    url = ctx.stream_database(kind)
    out: list[dict[str, Any]] = []
    with Server(kind, url, ctx.cluster.workdir, ctx.layout.server).start() as server:
        ctx.say(f"{kind} round {rnd}: server pid {server.pid} on CPU {server.affinity()}")
        groups = [[p for p in phases if p == "a"], [p for p in phases if p in ("b", "c")]]
        for group in (g for g in groups if g):
            clients = PHASES[group[0]][0]
            fleet = Fleet(
                [server.port],
                STREAM_ORGS,
                clients,
                procs=1 if clients <= 100 else 2,
                ready_marker=SNAPSHOT_MARKER if kind == PGACTIVITY else None,
                first_alone=kind == TYPICAL,
            )
            connected = fleet.wait_ready()
            ctx.say(f"  {connected['ready']} clients ready in {connected['seconds']:.1f} s")
            idle = CpuMeter({"postgres": ctx.cluster.postgres_cpu})
            idle.start()
            time.sleep(2)
            pg_idle = idle.stop()["cpu_postgres"]  # % of a core: background work, pings, no writes
            runs = []
            for phase in group:
                runs.append((phase, *_phase(ctx, kind, url, server, fleet, PHASES[phase][1], duration, warmup)))
            received = fleet.stop()
            lo = min(w.token_base for _, w, *_ in runs)
            hi = max(w.token_base + len(w.commits) for _, w, *_ in runs)
            exact = exactly_once(tokens_written(url, lo, hi), received, lo, hi)
            ctx.say(f"  exactly once: {exact}")
            for phase, written, window, cpu, rss, drained in runs:
                numbers = analyze(written, STREAM_ORGS, received, window)
                numbers["pg_ms_per_event"] = 1000 * cpu["postgres_cpu_s"] / max(1, numbers["committed"])
                numbers["pg_writer_ms_per_event"] = 1000 * cpu["pg_writer_cpu_s"] / max(1, numbers["committed"])
                numbers["pg_idle_cpu"] = pg_idle
                out.append(
                    {
                        "system": kind,
                        "phase": phase,
                        "round": rnd,
                        "rate": PHASES[phase][1],
                        **numbers,
                        **cpu,
                        "rss_mb": rss / 2**20,
                        "drain_s": drained,
                        "exact_clients": exact["exact_clients"],
                    }
                )
                x = out[-1]
                ctx.say(
                    f"  ({phase}) {kind}: {x['writes_per_s']:.0f} writes/s, {x['delivered_per_s']:,.0f} delivered/s, "
                    f"p50 {x['p50_ms']:.1f} p99 {x['p99_ms']:.1f} ms, PostgreSQL {x['pg_ms_per_event']:.2f} ms/event, "
                    f"undelivered {x['undelivered']}, duplicates {x['duplicates']}"
                )
    return out


def _phase(
    ctx: Context, kind: str, url: str, server: Server, fleet: Fleet, rate: float, duration: float, warmup: float
) -> tuple[Any, tuple[float, float], dict[str, float], int, float]:
    writer = Writer(WriterSpec(kind, url, STREAM_ORGS, rate, duration, next(_token_bases), connections=2))
    writer_backends = ctx.cluster.backend_pids(WRITER_APPLICATION)
    meter = CpuMeter(
        {
            "server": server.cpu,
            "postgres": ctx.cluster.postgres_cpu,
            # Part of "postgres": the writer's own backends, which run the write and its triggers.
            "pg_writer": lambda: meters.cpu_of(writer_backends),
            "clients": lambda: meters.cpu_of(fleet.pids()),
            "writer": lambda: meters.cpu_seconds(writer.pid),
        }
    )
    writer.go()
    time.sleep(warmup)
    w0 = time.monotonic()
    meter.start()
    written = writer.wait_done()
    cpu = meter.stop()
    writer.close()
    rss = server.rss()  # at the writer's end, before the backlog drains
    drained = fleet.drain()
    return written, (w0, min(time.monotonic(), written.t1)), cpu, rss, drained


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    if not runs:
        return {}
    return {
        k: statistics.median(r[k] for r in runs)
        for k, v in runs[0].items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _get(med: dict[tuple[str, str], dict[str, float]], kind: str, phase: str, key: str) -> float:
    return med.get((kind, phase), {}).get(key, float("nan"))


def _row_a(med: dict[tuple[str, str], dict[str, float]]) -> Row:
    t50, t99 = _get(med, TYPICAL, "a", "p50_ms"), _get(med, TYPICAL, "a", "p99_ms")
    o50, o99 = _get(med, PGACTIVITY, "a", "p50_ms"), _get(med, PGACTIVITY, "a", "p99_ms")
    return Row(
        "a",
        f"{ms(t50)} / {ms(t99)}",
        f"{ms(o50)} / {ms(o99)}",
        o50 <= t50 and o99 <= t99,
        f"p50 {ratio(o50, t50):.2f}x, p99 {ratio(o99, t99):.2f}x the typical app's",
    )


def _row_b(med: dict[tuple[str, str], dict[str, float]]) -> Row:
    t99, o99 = _get(med, TYPICAL, "b", "p99_ms"), _get(med, PGACTIVITY, "b", "p99_ms")
    return Row("b", ms(t99), ms(o99), o99 <= targets.P99_LIMIT_MS, f"p99 {ms(o99)} (limit {targets.P99_LIMIT_MS:g} ms)")


def _row_c(med: dict[tuple[str, str], dict[str, float]]) -> Row:
    def cell(kind: str) -> str:
        w, d, p = (_get(med, kind, "c", k) for k in ("writes_per_s", "delivered_per_s", "p99_ms"))
        return f"{per_s(w)}, {per_s(d)}, {ms(p)}"

    writes = _get(med, PGACTIVITY, "c", "writes_per_s")
    delivered = ratio(_get(med, PGACTIVITY, "c", "delivered_per_s"), _get(med, TYPICAL, "c", "delivered_per_s"))
    p99 = _get(med, PGACTIVITY, "c", "p99_ms")
    met = (
        delivered >= targets.FANOUT_FACTOR
        and p99 <= targets.P99_LIMIT_MS
        and writes >= targets.ASKED_RATE_SHARE * PHASES["c"][1]
    )
    why = f"delivered {delivered:.2f}x the typical app's, p99 {ms(p99)}, writes {writes:.0f} of {PHASES['c'][1]:.0f}/s"
    return Row("c", cell(TYPICAL), cell(PGACTIVITY), met, why)


def _row_d(med: dict[tuple[str, str], dict[str, float]], phases: list[str]) -> Row:
    used = [p for p in ("a", "b") if p in phases]
    typ = [_get(med, TYPICAL, p, "pg_ms_per_event") for p in used]
    ours = [_get(med, PGACTIVITY, p, "pg_ms_per_event") for p in used]
    ratios = [ratio(o, t) for o, t in zip(ours, typ, strict=True)]
    idle = ", ".join(f"{k} {_get(med, k, p, 'pg_idle_cpu'):.1f} %" for k in SYSTEMS for p in used[:1])
    split = "; ".join(
        f"({p}) {k} {_get(med, k, p, 'pg_writer_ms_per_event'):.2f} of {_get(med, k, p, 'pg_ms_per_event'):.2f} ms"
        for p in used
        for k in SYSTEMS
    )
    return Row(
        "d",
        " | ".join(f"{v:.2f}" for v in typ) + " ms",
        " | ".join(f"{v:.2f}" for v in ours) + " ms",
        all(r <= targets.PG_CPU_FACTOR for r in ratios),
        ", ".join(f"({p}) {r:.2f}x" for p, r in zip(used, ratios, strict=True)) + " the typical app's",
        details=[
            f"PostgreSQL at rest (2 s with the clients connected, before the writes; median): {idle} of a core; "
            "the pg_idle_cpu column of row a has every sample",
            f"of it, the writer's own backends (the write, its triggers, its commit; median): {split}; "
            "the rest is the server's connections (LISTEN, log and snapshot reads) and PostgreSQL's own processes",
        ],
    )
