"""Benchmark 3: server memory (RSS) per idle SSE connection.

For each N, a fresh server: warm it up (a few clients connect and leave), read
its RSS from /proc/<pid>/status, connect N clients that then stay idle, wait
for the memory to settle, read RSS again: (after - before) / N. The clients run
in another process (file descriptor limits raised on both sides). pgactivity's
clients have each received their first snapshot (10 activities per
organization in the database); the typical app's have their response headers.

    python bench/idle_memory.py            # N = 1000 and 5000, about 1.5 minutes
    python bench/idle_memory.py --quick    # N = 1000
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import psycopg

from common import (
    PGACTIVITY,
    TYPICAL,
    Fleet,
    Server,
    cluster,
    header,
    loadavg,
    org_names,
    print_table,
    rss_bytes,
)
from common import write_json as save

SQL_SEED = """
INSERT INTO agent_activities (organization_id, session_id, agent_type, agent_name, status, progress, output_data)
VALUES (%s, %s, 'executor', 'executor-high', 'completed', 100, %s)
"""
COLUMNS = ("system", "clients", "rss_before_mb", "rss_after_mb", "kb_per_connection", "connect_s")


def measure(system: str, url: str, workdir: Any, organizations: list[str], n: int, procs: int) -> dict[str, Any]:
    server = Server(system, url, workdir).start()
    marker = b'"snapshot"' if system == PGACTIVITY else None
    try:
        warm = Fleet(server.port, organizations, 50, procs=1, ready_marker=marker, first_alone=system == TYPICAL)
        warm.wait_ready()
        time.sleep(0.5)
        warm.stop()
        time.sleep(2)
        before = rss_bytes(server.pid)
        fleet = Fleet(server.port, organizations, n, procs=procs, ready_marker=marker, first_alone=system == TYPICAL)
        connected = fleet.wait_ready()
        time.sleep(3)
        after = rss_bytes(server.pid)
        fleet.stop()
    finally:
        server.stop()
    row = {
        "system": system,
        "clients": connected["ready"],
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "kb_per_connection": (after - before) / 1024 / max(1, connected["ready"]),
        "connect_s": connected["seconds"],
    }
    print("  " + "  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,5000", help="numbers of idle clients, comma-separated")
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--systems", default=f"{PGACTIVITY},{TYPICAL}")
    parser.add_argument("--quick", action="store_true", help="N = 1000 only")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    counts = [1000] if args.quick else [int(c) for c in args.counts.split(",")]
    info = header(f"idle memory: RSS per idle SSE connection at {counts} clients")
    organizations = org_names(args.orgs)
    rows = []
    with cluster() as cl:
        seed(cl.pgactivity_url, organizations)
        seed(cl.typical_url, organizations)
        for system in args.systems.split(","):
            url = cl.typical_url if system == TYPICAL else cl.pgactivity_url
            for n in counts:
                rows.append(measure(system, url, cl.workdir, organizations, n, args.client_procs))
    info["load_after"] = loadavg()
    print(f"\nload average after: {info['load_after']}")
    print_table(rows, COLUMNS)
    save(args.json, {**info, "rows": rows})


def seed(url: str, organizations: list[str]) -> None:
    """10 finished activities per organization, so that pgactivity's snapshot is not empty."""
    with psycopg.connect(url, autocommit=True) as conn:
        for org in organizations:
            for k in range(10):
                conn.execute(SQL_SEED, (org, f"ses-{k}", json.dumps({"step": k})))


if __name__ == "__main__":
    main()
