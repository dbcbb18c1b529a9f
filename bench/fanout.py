"""Benchmark 2: delivered events/s and latency with 1000 SSE clients as the write rate grows.

1000 clients in 10 organizations (100 per organization, in two client
processes) stay connected while the writer commits 100, 300, 1000 and 2000
events/s in turn; each event goes to the 100 clients of its organization, so
the clients should receive 100x the write rate. Where delivered falls below
expected, or latency climbs, the server has saturated; the CPU columns (% of
one core, from /proc/<pid>/stat) say which process was busy. Side by side: the
raw ceiling (one LISTEN connection, no HTTP), pgactivity, and the typical app.

    python bench/fanout.py            # 8 s per rate, about 3 minutes
    python bench/fanout.py --quick    # 4 s per rate, about 1.5 minutes
"""

from __future__ import annotations

import argparse

from common import CEILING, PGACTIVITY, TYPICAL, Load, cluster, header, loadavg, org_names, print_table, run_system
from common import write_json as save

COLUMNS = (
    "system",
    "rate",
    "write_rate",
    "expected_per_s",
    "delivered_per_s",
    "p50_ms",
    "p99_ms",
    "undelivered",
    "drain_s",
    "cpu_server",
    "cpu_postgres",
    "cpu_clients",
    "cpu_writer",
    "cpu_machine",
    "rss_mb",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,300,1000,2000", help="writer events/s, comma-separated")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=8, help="seconds of writing per rate")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--writer-connections", type=int, default=4)
    parser.add_argument("--systems", default=f"{CEILING},{PGACTIVITY},{TYPICAL}")
    parser.add_argument("--quick", action="store_true", help="4 s per rate")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    load = Load(
        org_names(args.orgs),
        args.clients,
        rates,
        4 if args.quick else args.duration,
        warmup=1.5 if args.quick else 2,
        client_procs=args.client_procs,
        writer_connections=args.writer_connections,
    )
    info = header(f"fanout: {args.clients} SSE clients in {args.orgs} organizations, writer at {args.rates} events/s")
    rows = []
    with cluster() as cl:
        for system in args.systems.split(","):
            rows += run_system(system, cl, load)
    info["load_after"] = loadavg()
    print(f"\nload average after: {info['load_after']}")
    print_table(rows, COLUMNS)
    by = {(r["system"], r["rate"]): r for r in rows}
    for rate in rates:
        ours, typical = by.get((PGACTIVITY, rate)), by.get((TYPICAL, rate))
        if ours and typical:
            ratio = ours["delivered_per_s"] / max(1.0, typical["delivered_per_s"])
            print(f"at {rate:g}/s: pgactivity delivers {ratio:.2f}x the typical app's events/s")
    best = {
        system: max((r["delivered_per_s"] for r in rows if r["system"] == system), default=0.0)
        for system in (PGACTIVITY, TYPICAL)
    }
    if best[PGACTIVITY] and best[TYPICAL]:
        print(
            f"highest delivered events/s: pgactivity {best[PGACTIVITY]:,.0f}, typical {best[TYPICAL]:,.0f}: "
            f"{best[PGACTIVITY] / best[TYPICAL]:.1f}x (target >= 3x)"
        )
    save(args.json, {**info, "rows": rows})


if __name__ == "__main__":
    main()
