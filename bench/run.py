"""Issue 12's table, measured in one run: pgactivity and the typical app side by side.

    python bench/run.py                     # every row, about 35 minutes
    python bench/run.py --quick             # every row, shorter, about 8 minutes
    python bench/run.py --only latency,writes --json /tmp/bench.json

Rows (names for --only; letters work too):
  a latency   100 clients at 200 writes/s: p50 / p99 commit->client
  b,c fanout  1000 clients at 300 writes/s (p99) and at 1000 writes/s asked
  d pgcpu     PostgreSQL CPU per written event, in the runs of a and b
  e idle      idle connections at 1000 and 5000 clients: RSS each, and after they leave
  f snapshot  12 new clients on an organization with 60 activities of 2 MB
  g writes    pgbench: agent_activity_start vs the typical app's INSERT, 1/4/16 connections
  h notify    pgbench: the same against a copy of agent_activities with only a NOTIFY trigger
  n payload   pgbench: agent_activity_start, its event inline in the NOTIFY vs by reference
  i progress  pgbench: agent_activity_progress with a new message, 1/4 connections
  j bulk      one transaction of 5k/20k/40k/200k rows for one organization; 20k over 1,000
  k search    GET /api/activities in a 200k-row organization: q, page 1, every filter
  l scaleout  issue 14: commits/s with 1/16/64 serve processes, LISTEN mode vs broker mode (NATS)
  m failover  issue 14: broker mode, the relay SIGKILLed twice under load: takeover, exactness

One PostgreSQL cluster (durable commits) serves every row; the server under test
runs alone on CPU 0, everything else on CPU 1. bench/README.md says how each row is
measured.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import bench_big_snapshot
import bench_bulk
import bench_idle
import bench_live
import bench_scaleout
import bench_search
import bench_writes
import machine
import report
from cluster import Cluster
from context import Context
from report import Row

Runner = Callable[[Context, set[str]], list[Row]]
# In the order they run: the write rows first, while nothing else of ours is on the machine.
GROUPS: list[tuple[set[str], Runner]] = [
    ({"g", "h", "n", "i"}, bench_writes.run),
    ({"j"}, bench_bulk.run),
    ({"k"}, bench_search.run),
    ({"a", "b", "c", "d"}, bench_live.run),
    ({"e"}, bench_idle.run),
    ({"f"}, bench_big_snapshot.run),
    ({"l", "m"}, bench_scaleout.run),
]
NAMES = {
    "latency": {"a"},
    "fanout": {"b", "c"},
    "pgcpu": {"d"},
    "idle": {"e"},
    "snapshot": {"f"},
    "writes": {"g"},
    "notify": {"h"},
    "payload": {"n"},
    "progress": {"i"},
    "bulk": {"j"},
    "search": {"k"},
    "scaleout": {"l"},
    "failover": {"m"},
    "all": set("abcdefghijklmn"),
}


def selection(only: str | None) -> set[str]:
    if not only:
        return set(NAMES["all"])
    keys: set[str] = set()
    for name in (n.strip() for n in only.split(",") if n.strip()):
        if name in NAMES:
            keys |= NAMES[name]
        elif len(name) == 1 and name in NAMES["all"]:
            keys.add(name)
        else:
            raise SystemExit(f"unknown row {name!r}: choose from {', '.join(NAMES)} or the letters a-m")
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter phases, one round, lower caps")
    parser.add_argument("--only", help="comma-separated rows (names or letters), default: all")
    parser.add_argument("--json", help="also write every number to this file")
    parser.add_argument("--pg-bin", type=Path, help="another PostgreSQL's bin dir, e.g. /usr/lib/postgresql/15/bin")
    parser.add_argument("--durable", action="store_true", help="durable commits for the streaming rows too")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the load to CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory and the server logs")
    args = parser.parse_args()
    keys = selection(args.only)

    layout = machine.Layout.choose(pin=not args.no_pin)
    layout.pin_self_to_load()
    info = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "machine": machine.describe(layout)}
    info["load_before"] = machine.loadavg()
    cluster = Cluster(args.pg_bin, keep=args.keep)
    rows: list[Row] = []
    failures: list[str] = []
    started = time.monotonic()
    try:
        cluster.start()
        info["postgresql"] = cluster.describe()
        _print_machine(info)
        ctx = Context(cluster, layout, args.quick, args.pg_bin, durable_all=args.durable)
        for group, runner in GROUPS:
            wanted = keys & group
            if not wanted:
                continue
            try:
                rows += runner(ctx, wanted)
            except Exception as exc:  # one broken row must not cost the others
                traceback.print_exc()
                failures.append(f"rows {','.join(sorted(wanted))}: {exc!r}")
    finally:
        cluster.stop()
    info["load_after"] = machine.loadavg()
    info["minutes"] = round((time.monotonic() - started) / 60, 1)
    info["failures"] = failures
    print()
    _print_machine(info)
    print(f"load average before: {info['load_before']}, after: {info['load_after']}; {info['minutes']} minutes\n")
    report.print_table(rows)
    report.print_details(rows)
    for failure in failures:
        print(f"\nFAILED {failure}", file=sys.stderr)
    report.save(args.json, info, rows)
    return 1 if failures else 0


def _print_machine(info: dict[str, object]) -> None:
    m = info["machine"]
    pg = info.get("postgresql", {})
    assert isinstance(m, dict)
    assert isinstance(pg, dict)
    settings = ", ".join(f"{k}={v}" for k, v in pg.get("settings", {}).items())
    print(
        f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gb']} GB, Linux {m['kernel']}, as {m['user']}\n"
        f"layout: {m['layout']} (postmaster on CPU {pg.get('postmaster_cpus', '?')})\n"
        f"PostgreSQL {pg.get('postgresql', '?')} ({pg.get('binaries', '?')}): {settings}\n"
        f"code: {m['code']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
