"""Benchmark 1: commit-to-client latency at a steady write rate.

The writer commits `--rate` events/s (one transaction each, spread over
`--orgs` organizations); `--clients` SSE clients, evenly spread over the
organizations, run in their own process. Latency is the time a client received
an event minus the time the writer's commit returned. Side by side, each in
turn on one fresh PostgreSQL: the raw ceiling (one psycopg connection doing
LISTEN, no HTTP), the ceiling plus the read of each event's log row (what a
design whose NOTIFY is only a wake-up must add), pgactivity, and the typical
broadcaster + sse-starlette app.

    python bench/latency.py            # 20 s per system, about 2 minutes
    python bench/latency.py --quick    # 6 s per system
"""

from __future__ import annotations

import argparse

from common import (
    CEILING,
    CEILING_READ,
    PGACTIVITY,
    TYPICAL,
    Load,
    cluster,
    header,
    loadavg,
    org_names,
    print_table,
    run_system,
)
from common import write_json as save

COLUMNS = ("system", "write_rate", "clients", "delivered_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=20, help="seconds of writing per system")
    parser.add_argument("--systems", default=f"{CEILING},{CEILING_READ},{PGACTIVITY},{TYPICAL}")
    parser.add_argument("--quick", action="store_true", help="6 s per system")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    duration = 6 if args.quick else args.duration
    info = header(f"latency: {args.rate:g} events/s, {args.clients} SSE clients in {args.orgs} organizations")
    load = Load(
        org_names(args.orgs), args.clients, [args.rate], duration, warmup=2 if args.quick else 3, client_procs=1
    )
    rows = []
    with cluster() as cl:
        for system in args.systems.split(","):
            rows += run_system(system, cl, load)
    info["load_after"] = loadavg()
    print(f"\nload average after: {info['load_after']}")
    print_table(rows, COLUMNS)
    p99 = {r["system"]: r["p99_ms"] for r in rows}
    for ceiling in (CEILING, CEILING_READ):
        if ceiling in p99 and PGACTIVITY in p99:
            print(f"pgactivity p99 / {ceiling} p99 = {p99[PGACTIVITY] / p99[ceiling]:.2f} (target <= 2 for {CEILING})")
    save(args.json, {**info, "rows": rows})


if __name__ == "__main__":
    main()
