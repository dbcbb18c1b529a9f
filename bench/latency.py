"""Benchmark 1: commit-to-client latency at a steady write rate.

The writer commits `--rate` events/s (one transaction each, spread over
`--orgs` organizations); `--clients` SSE clients, evenly spread over the
organizations, run in their own process. Latency is the time a client received
an event minus the time the writer's commit returned. Side by side, each in
turn on one fresh PostgreSQL: the raw ceiling (one psycopg connection doing
LISTEN, no HTTP), the ceiling plus the read of each event's log row (what a
design whose NOTIFY is only a wake-up must add), pgactivity, and the typical
broadcaster + sse-starlette app.

    python bench/latency.py            # 3 rounds of 8 s per system, about 2.5 minutes
    python bench/latency.py --quick    # 1 round of 6 s per system

The systems take turns (`--rounds`) so that a burst of load from something
else on the machine does not land on one of them only; the table shows the
median of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

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

COLUMNS = ("system", "write_rate", "clients", "delivered_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_server")


def median_row(system: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's rounds: the median of each number, the worst max, and the per-round p99s."""
    mine = [r for r in rows if r["system"] == system]
    out: dict[str, Any] = {"system": system, "rounds": len(mine)}
    for key, value in mine[0].items():
        if isinstance(value, int | float) and key != "rate":
            out[key] = statistics.median(r[key] for r in mine)
    out["max_ms"] = max(r["max_ms"] for r in mine)
    out["p99_rounds"] = [round(r["p99_ms"], 2) for r in mine]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=8, help="seconds of writing per system and round")
    parser.add_argument("--rounds", type=int, default=3, help="the systems take turns this many times")
    parser.add_argument("--systems", default=f"{CEILING},{CEILING_READ},{PGACTIVITY},{TYPICAL}")
    parser.add_argument("--quick", action="store_true", help="one round of 6 s per system")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    duration, rounds = (6.0, 1) if args.quick else (args.duration, args.rounds)
    info = header(f"latency: {args.rate:g} events/s, {args.clients} SSE clients in {args.orgs} organizations")
    load = Load(org_names(args.orgs), args.clients, [args.rate], duration, warmup=2, client_procs=1)
    systems = args.systems.split(",")
    rows: list[dict[str, Any]] = []
    with cluster() as cl:
        for n in range(rounds):
            print(f"round {n + 1} of {rounds}, load average {loadavg()}", flush=True)
            for system in systems:
                rows += [{**row, "round": n + 1} for row in run_system(system, cl, load)]
    info["load_after"] = loadavg()
    print(f"\nload average after: {info['load_after']}")
    summary = [median_row(system, rows) for system in systems]
    if rounds > 1:
        print(f"median of {rounds} rounds (max_ms: the worst round)")
    print_table(summary, COLUMNS)
    p99 = {r["system"]: r["p99_ms"] for r in summary}
    for ceiling in (CEILING, CEILING_READ):
        if ceiling in p99 and PGACTIVITY in p99:
            print(f"pgactivity p99 / {ceiling} p99 = {p99[PGACTIVITY] / p99[ceiling]:.2f} (target <= 2 for {CEILING})")
    save(args.json, {**info, "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
