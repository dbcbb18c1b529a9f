"""Rows l and m (issue 14): what each added `serve` process costs every write, in LISTEN mode and in
broker mode (NATS), and the relay killed under a steady write load.

(l) For n = 1, 16 and 64 processes in each mode, and once with no server at all:
n `pgactivity serve` processes on the server CPU (broker mode: one nats-server
there too), each with 4 SSE clients, of 4 of the 100 organizations (process p:
organizations 4p+1 .. 4p+4, modulo 100), so that every process follows some
organizations and an event goes to a few clients. pgbench then commits one
`agent_activity_start` per transaction from 8 connections into random
organizations among the 100, durable commits, as in the issue's table; each
write carries a token from a sequence. A setup runs `rounds` times, the clients
drain between runs, and the row gives the median. Before the first run the servers
get up to 90 s to come to rest (under 40 % of a core together): 64 processes that
just started and sent their snapshots are busy for a while. At the end every client's
tokens are compared with the database's: each client must have every event of
its organization once. The details also count the LISTEN backends
(application_name `pgactivity-listener`) while the writes ran.

(m) Broker mode, 5 processes with 10 clients each (one per organization of 10),
the paced writer at 500 starts/s from 2 connections. The relay is SIGKILLed at
one third of the run and the new relay at two thirds. Takeover is the time from
the kill to a survivor's /metrics saying `pgactivity_relay_active 1`. The clients
of a killed process lose their connection (a real client reconnects with
Last-Event-ID; the e2e tests cover that) and are left out; every client of the
survivors must receive every event of its organization once, and the row gives the
latency of the events committed in the 5 s after each kill.

Every process gets PGACTIVITY_POOL_MAX_SIZE=2 (64 processes must fit in
max_connections=300) and PYTHONMALLOC=malloc (what `serve` would re-exec itself
with, done up front so 64 processes start once).
"""

from __future__ import annotations

import re
import signal
import statistics
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import psycopg

import meters
import pgbench
import seed
import targets
from cluster import PGACTIVITY
from context import Context
from delivery import analyze, exactly_once, tokens_written
from fleet import SNAPSHOT_MARKER, Fleet, Received
from machine import load1
from meters import CpuMeter
from nats_server import NatsServer
from report import Row, count, ms, ratio, simple_table
from servers import Server, ServerGroup
from writer import Writer, WriterSpec

COUNTS = (1, 16, 64)
MODES = ("listen", "broker")
ORGS = [f"org-{k}" for k in range(1, 101)]
CLIENTS_PER_SERVER = 4
PGBENCH_CONNECTIONS = 8
TOKEN_BASE = 1_000_000_000
FAILOVER_TOKEN_BASE = 2_000_000_000
FAILOVER_SERVERS = 5
FAILOVER_RATE = 500.0
TEMPLATE = "scaleout_template"
RUN_DB = "scaleout_run"
ENV = {"PGACTIVITY_POOL_MAX_SIZE": "2", "PYTHONMALLOC": "malloc"}
INPUT = (
    '{"prompt": "Implement ticket: ' + seed.PROMPT + '", "repo": "acme/service-1", '
    '"files": ["src/app/module_1.py", "tests/test_module_1.py"], "maxTokens": 8000}'
)
SCRIPT = (
    "\\set org random(1, 100)\n\\set s random(1, 100000000)\n"
    "SELECT agent_activity_start('org-' || :org::text, 'executor', 'executor-high', 'ses-' || :s::text, "
    f"'ultrabrain', '{INPUT}'::jsonb, "
    "jsonb_build_object('bench', '~' || nextval('bench_tokens') || '~', 'model', 'claude-sonnet-4'));\n"
)
RELAY_ACTIVE = re.compile(rb"^pgactivity_relay_active (\S+)$", re.M)
TAIL_COUNTERS = re.compile(rb"^(pgactivity_events_inline_total|pgactivity_log_tail_reads_total) (\S+)$", re.M)
COLUMNS = (
    "mode",
    "servers",
    "commits_per_s",
    "runs",
    "listen_backends",
    "clients",
    "exact_clients",
    "missing",
    "duplicates",
    "drain_s",
    "tail_reads",
    "events_inline",
    "cpu_servers",
    "cpu_nats",
    "cpu_postgres",
    "cpu_clients",
    "rss_mb_per_server",
    "servers_died",
)


def run(ctx: Context, keys: set[str]) -> list[Row]:
    rows: list[Row] = []
    if "l" in keys:
        rows.append(_commit_rate(ctx))
    if "m" in keys:
        rows.append(_failover(ctx))
    return rows


# -- (l) commit rate with 1, 16, 64 processes ---------------------------------------


def _commit_rate(ctx: Context) -> Row:
    seconds, rounds = (4.0, 1) if ctx.quick else (6.0, 5)
    load_before = load1()
    durability = ctx.durability(True)
    _template(ctx)
    script = ctx.cluster.workdir / "pgbench-scaleout.sql"
    script.write_text(SCRIPT)
    results = [_setup(ctx, "none", 0, script, seconds, rounds)]
    for n in COUNTS:
        for mode in MODES:
            results.append(_setup(ctx, mode, n, script, seconds, rounds))
    rate = {(r["mode"], r["servers"]): r["commits_per_s"] for r in results}
    exact = all(r["exact_clients"] == r["clients"] and not r["servers_died"] for r in results)
    cells = {m: " / ".join(count(rate.get((m, n), float("nan"))) for n in COUNTS) for m in MODES}
    broker_ratios = [ratio(rate[("broker", n)], rate[("broker", 1)]) for n in COUNTS]
    listen_ratios = [ratio(rate[("listen", n)], rate[("listen", 1)]) for n in COUNTS]
    met = exact and all(r >= 1 - targets.SCALEOUT_LOSS for r in broker_ratios)
    clients = sum(r["clients"] for r in results)
    exact_clients = sum(r["exact_clients"] for r in results)
    why = (
        "broker mode at 16 / 64 processes: "
        + " / ".join(f"{r:.2f}" for r in broker_ratios[1:])
        + f"x its 1-process rate (at least {1 - targets.SCALEOUT_LOSS:.2f}); LISTEN mode: "
        + " / ".join(f"{r:.2f}" for r in listen_ratios[1:])
        + f"x; {exact_clients} of {clients} clients got every event of their organization exactly once"
    )
    row = Row(
        "l",
        f"LISTEN mode {cells['listen']} commits/s",
        f"broker mode {cells['broker']} commits/s",
        met,
        why,
        conditions=(
            f"pgbench -M prepared, {PGBENCH_CONNECTIONS} connections, one agent_activity_start per transaction into "
            f"100 organizations of 100 activities, {seconds:g} s per run, median of {rounds}; {durability}; "
            f"{CLIENTS_PER_SERVER} SSE clients per process; servers and nats-server on CPU "
            f"{_cpus(ctx.layout.server)}, PostgreSQL, pgbench and the clients on CPU {_cpus(ctx.layout.load)}; "
            f"no server at all: {count(rate[('none', 0)])} commits/s"
        ),
        details=simple_table(results, COLUMNS),
        numbers={"runs": results},
        load=f"{load_before} -> {load1()}",
    )
    return row


def _template(ctx: Context) -> None:
    if ctx.cluster.has(TEMPLATE):
        return
    url = ctx.cluster.create(TEMPLATE, PGACTIVITY)
    seed.prefill(url, ORGS, 100)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SEQUENCE bench_tokens START {TOKEN_BASE}")
    ctx.say(f"{TEMPLATE}: {len(ORGS)} organizations x 100 activities")


def _setup(ctx: Context, mode: str, n: int, script: Any, seconds: float, rounds: int) -> dict[str, Any]:
    url = ctx.cluster.clone(RUN_DB, TEMPLATE)
    nats = NatsServer(ctx.cluster.workdir, ctx.layout.server).start() if mode == "broker" else None
    env = dict(ENV) | ({"PGACTIVITY_NATS_URL": nats.url} if nats else {})
    group = ServerGroup.of(n, PGACTIVITY, url, ctx.cluster.workdir, ctx.layout.server, env)
    fleet: Fleet | None = None
    try:
        started = time.monotonic()
        group.start(timeout=600)
        if n:
            ctx.say(f"(scale-out) {mode}: {n} servers ready in {time.monotonic() - started:.0f} s")
            assignment = [
                (ORGS[(CLIENTS_PER_SERVER * p + j) % len(ORGS)], port)
                for p, port in enumerate(group.ports)
                for j in range(CLIENTS_PER_SERVER)
            ]
            fleet = Fleet.assigned(assignment, ready_marker=SNAPSHOT_MARKER)
            fleet.wait_ready()
        if mode == "broker":
            _wait_for_relay(group.servers, timeout=60)
        if n:
            settled = _settle(group)
            ctx.say(f"(scale-out) {mode}: {n} servers at rest after {settled:.0f} s")
        rates: list[float] = []
        backends: list[int] = []
        drain = 0.0
        client_pids = fleet.pids() if fleet else []
        meter = CpuMeter(
            {
                "servers": group.cpu,
                "nats": (lambda: meters.cpu_seconds(nats.pid)) if nats else (lambda: 0.0),
                "postgres": ctx.cluster.postgres_cpu,
                "clients": lambda: meters.cpu_of(client_pids),
            }
        )
        cpu: dict[str, float] = {}
        counters_before = _tail_counters(group.servers)
        for _ in range(rounds):
            ctx.cluster.checkpoint()
            meter.start()
            result = pgbench.run(url, script, PGBENCH_CONNECTIONS, seconds, ctx.pg_bin)
            for role, value in meter.stop().items():
                cpu[role] = cpu.get(role, 0.0) + value / rounds
            backends.append(_listen_backends(url))
            rates.append(result.tps)
            if fleet:
                drain = max(drain, fleet.drain(max_seconds=180, quiet=2.0))
            ctx.say(f"(scale-out) {mode} {n:>2} servers: {result.tps:,.0f} commits/s, drained in {drain:.1f} s")
        counters = _tail_counters(group.servers)
        alive = [s for s in group.servers if s.proc is not None and s.proc.poll() is None]
        for dead in (s for s in group.servers if s not in alive):
            ctx.say(f"  server pid {dead.pid} exited with {dead.proc.returncode if dead.proc else '?'}:\n{dead.log()}")
        rss = sum(s.rss() for s in alive) / max(1, len(alive)) / 2**20
        exact: dict[str, int] = {"clients": 0, "exact_clients": 0, "missing": 0, "duplicates": 0}
        if fleet:
            received = fleet.stop()
            fleet = None
            hi = _last_token(url) + 1
            exact = exactly_once(tokens_written(url, TOKEN_BASE, hi), received, TOKEN_BASE, hi)
            ctx.say(f"  exactly once: {exact}")
        return {
            "mode": mode,
            "servers": n,
            "commits_per_s": statistics.median(rates),
            "runs": " ".join(f"{r:.0f}" for r in rates),
            "listen_backends": max(backends),
            "clients": exact["clients"],
            "exact_clients": exact["exact_clients"],
            "missing": exact["missing"],
            "duplicates": exact["duplicates"],
            "drain_s": drain,
            # Over the measured rounds, all processes together: reads of the log by the live tails
            # (gaps, resyncs, safety reads) and events handed on straight from their notification.
            "tail_reads": counters[0] - counters_before[0],
            "events_inline": counters[1] - counters_before[1],
            **{k: v for k, v in cpu.items() if k.startswith("cpu_")},
            "rss_mb_per_server": rss,
            "servers_died": n - len(alive),
        }
    finally:
        if fleet:
            fleet.stop()
        group.stop()
        if nats:
            nats.stop()
        ctx.cluster.drop(RUN_DB)


def _settle(group: ServerGroup, idle_share: float = 0.4, limit: float = 90) -> float:
    """Wait until the servers, together, use less than `idle_share` of a core (64 processes that
    just started and served their snapshots are still busy for a while); returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = group.cpu()
        time.sleep(2)
        if (group.cpu() - before) / 2 < idle_share:
            break
    return time.monotonic() - started


def _tail_counters(servers: Sequence[Server]) -> tuple[int, int]:
    """pgactivity_log_tail_reads_total and pgactivity_events_inline_total, summed over the servers."""
    reads = inline = 0
    for server in servers:
        for name, value in TAIL_COUNTERS.findall(_metrics(server, timeout=5)):
            if name.endswith(b"reads_total"):
                reads += int(float(value))
            else:
                inline += int(float(value))
    return reads, inline


def _listen_backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgactivity-listener'"
        ).fetchone()
    return int(row[0]) if row else 0


def _last_token(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT last_value FROM bench_tokens").fetchone()
    return int(row[0]) if row else TOKEN_BASE


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus)) or "any"


# -- (m) the relay killed ------------------------------------------------------------


def _metrics(server: Server, timeout: float) -> bytes:
    """The server's /metrics text; empty if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=timeout) as resp:
            return bytes(resp.read())
    except OSError:
        return b""


def _is_relay(server: Server) -> bool:
    found = RELAY_ACTIVE.search(_metrics(server, timeout=2))
    return found is not None and float(found.group(1)) == 1


def _wait_for_relay(servers: Sequence[Server], timeout: float) -> tuple[Server, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for s in servers:
            if s.proc is not None and s.proc.poll() is None and _is_relay(s):
                return s, time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"no relay among {len(servers)} servers after {timeout:g} s")


def _failover(ctx: Context) -> Row:
    duration = 12.0 if ctx.quick else 24.0
    load_before = load1()
    durability = ctx.durability(False)
    _template(ctx)
    orgs = ORGS[:10]
    url = ctx.cluster.clone(RUN_DB, TEMPLATE)
    nats = NatsServer(ctx.cluster.workdir, ctx.layout.server).start()
    env = dict(ENV) | {"PGACTIVITY_NATS_URL": nats.url}
    group = ServerGroup.of(FAILOVER_SERVERS, PGACTIVITY, url, ctx.cluster.workdir, ctx.layout.server, env)
    fleet: Fleet | None = None
    try:
        group.start(timeout=300)
        fleet = Fleet.assigned([(o, p) for p in group.ports for o in orgs], ready_marker=SNAPSHOT_MARKER)
        fleet.wait_ready()
        _wait_for_relay(group.servers, timeout=60)
        _settle(group)
        writer = Writer(WriterSpec(PGACTIVITY, url, orgs, FAILOVER_RATE, duration, FAILOVER_TOKEN_BASE, 2))
        writer.go()
        t0 = time.monotonic()
        killed: list[Server] = []
        kills: list[dict[str, float]] = []
        for k in (1, 2):
            time.sleep(max(0.0, t0 + k * duration / 3 - time.monotonic()))
            alive = [s for s in group.servers if s not in killed]
            relay, _ = _wait_for_relay(alive, timeout=30)
            at = time.monotonic()
            assert relay.proc is not None
            relay.proc.send_signal(signal.SIGKILL)
            relay.proc.wait()
            killed.append(relay)
            successor, took = _wait_for_relay([s for s in alive if s is not relay], timeout=60)
            kills.append({"at": at, "takeover_s": took})
            ctx.say(f"(failover) relay pid {relay.pid} killed; pid {successor.pid} took over in {took:.2f} s")
        written = writer.wait_done()
        writer.close()
        fleet.drain(max_seconds=60, quiet=2.0)
        received = fleet.stop()
        fleet = None
    finally:
        if fleet:
            fleet.stop()
        group.stop()
        nats.stop()
    dead_ports = {s.port for s in killed}
    survivors = Received([c for c in received.clients if c.port not in dead_ports], received.lost)
    lo, hi = written.token_base, written.token_base + len(written.commits)
    exact = exactly_once(tokens_written(url, lo, hi), survivors, lo, hi)
    ctx.cluster.drop(RUN_DB)
    after = [analyze(written, orgs, survivors, (k["at"], k["at"] + 5)) for k in kills]
    whole = analyze(written, orgs, survivors, (written.t0, written.t1))
    takeovers = [k["takeover_s"] for k in kills]
    worst = max(a["max_ms"] for a in after)
    met = max(takeovers) < targets.FAILOVER_SECONDS and exact["exact_clients"] == exact["clients"]
    details = [
        f"kill {i + 1}: takeover {k['takeover_s']:.2f} s; events committed in the next 5 s: "
        f"p50 {ms(a['p50_ms'])}, p99 {ms(a['p99_ms'])}, max {ms(a['max_ms'])} commit->client, "
        f"undelivered {a['undelivered']}, duplicates {a['duplicates']}"
        for i, (k, a) in enumerate(zip(kills, after, strict=True))
    ]
    details.append(
        f"whole run: {whole['writes_per_s']:.0f} writes/s, p50 {ms(whole['p50_ms'])}, p99 {ms(whole['p99_ms'])}; "
        f"exactly once: {exact}"
    )
    return Row(
        "m",
        "-",
        "takeover " + " / ".join(f"{t:.2f} s" for t in takeovers) + f"; worst latency after a kill {ms(worst)}",
        met,
        f"takeover at most {max(takeovers):.2f} s (limit {targets.FAILOVER_SECONDS:g} s); "
        f"{exact['exact_clients']} of {exact['clients']} surviving clients exact "
        f"(missing {exact['missing']}, duplicates {exact['duplicates']})",
        conditions=(
            f"broker mode, {FAILOVER_SERVERS} processes on CPU {_cpus(ctx.layout.server)} with one nats-server, "
            f"10 clients each; the paced writer at {FAILOVER_RATE:g} starts/s from 2 connections for {duration:g} s; "
            f"{durability}; the relay SIGKILLed at 1/3 and its successor at 2/3 of the run"
        ),
        details=details,
        numbers={"kills": kills, "after": after, "whole": whole, "exact": exact},
        load=f"{load_before} -> {load1()}",
    )
