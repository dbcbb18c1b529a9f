"""What issues 12 and 14 say each row should show: their tables (typical app, pgactivity before
the rewrite; for l and m, LISTEN mode against broker mode) and their Targets.
Printed next to every measurement; never used to shape one."""

from __future__ import annotations

# row: (what is measured, typical app in the issue, pgactivity in the issue, target)
ROWS: dict[str, tuple[str, str, str, str]] = {
    "a": (
        "100 clients, 200 writes/s: p50 / p99 commit->client",
        "1.0 / 3.7 ms",
        "1.9 / 3.9 ms",
        "p50 and p99 <= the typical app's",
    ),
    "b": ("1000 clients, 300 writes/s: p99", "15.8 ms", "22.2 ms", "p99 <= 50 ms"),
    "c": (
        "1000 clients, 1000 writes/s asked: writes achieved, delivered ev/s, p99",
        "1000/s, 99.7k/s, 1262 ms",
        "569/s, 56.9k/s, 101 ms",
        "delivered >= 2x the typical app's, p99 <= 50 ms, writes >= 98 % of asked",
    ),
    "d": (
        "PostgreSQL CPU per written event (same run; at 200/s with 100 clients | 300/s with 1000)",
        "0.18 ms",
        "0.49 ms",
        "<= 1.3x the typical app's",
    ),
    "e": (
        "idle connection, 1000 / 5000 clients, RSS per connection (100-activity snapshots); RSS after they leave",
        "48 / 47 KB",
        "103 / 103 KB, not returned after they leave",
        "<= 25 KB at 1000 and 5000; RSS back within 20 % of its start",
    ),
    "f": (
        "12 concurrent new clients, organization whose 60 newest activities hold 2 MB each: bytes to each, RSS growth",
        "-",
        "120 MB to each, RSS +2.5 GB",
        "server RSS grows < 200 MB",
    ),
    "g": (
        "writes/s, one agent_activity_start (typical: INSERT) per transaction, pgbench, 1 / 4 / 16 conns, no listener",
        "4,290 / 4,874 / 4,570",
        "1,934 / 2,167 / 2,083 (0.45x)",
        ">= 0.7x the typical app's at 1, 4 and 16",
    ),
    "h": (
        "the same, typical column: a copy of agent_activities with its indexes and only a NOTIFY trigger",
        "2,765 / 3,593",
        "1,743 / 2,269 (0.63x)",
        ">= 0.8x the NOTIFY-trigger copy (Deliver 1)",
    ),
    "n": (
        "the event's ride in the NOTIFY: agent_activity_start with its event inline vs by reference "
        "(pgactivity.notify_max_bytes = 0: every NOTIFY {org, seq}), pgbench, 1 / 4 / 16 conns",
        "-",
        "-",
        ">= 0.8x the by-reference NOTIFY (Deliver 1: the write cost of the larger payload)",
    ),
    "i": (
        "progress updates/s (agent_activity_progress, new message), 1 / 4 conns",
        "-",
        "1,984 / 2,181",
        "at least as fast as agent_activity_start (row g)",
    ),
    "j": (
        "one transaction inserting N rows for one organization: 5k / 20k / 40k / 200k; 20k over 1,000 orgs",
        "200k: 0.97 s",
        "0.41 / 3.45 / 12.3 / 270 s; 20k over 1,000 orgs: 1.07 s",
        "200k within 5x the typical app's 200k, linear in N, seq gapless",
    ),
    "k": (
        "search in a 200k-row organization, limit 50: q=reading after a rarer word ran 12x; page 1; rare word; filters",
        "-",
        "1,600 ms; page 1: 2.3 ms; rare word: 5 ms",
        "every filter and q <= 20 ms",
    ),
    "l": (
        "commits/s (pgbench, 8 conns, agent_activity_start) with 1 / 16 / 64 serve processes, a few clients each",
        "issue 14, LISTEN connections on a NOTIFY-trigger table: 4,618 / 2,210 / 864",
        "-",
        "broker mode within 10 % of its 1-process rate at 16 and 64; every client gets every event once",
    ),
    "m": (
        "broker mode, the relay SIGKILLed twice under a steady write load: takeover, latency after, exactness",
        "-",
        "-",
        "a new relay within 5 s; no event lost or repeated for any client",
    ),
}

P99_LIMIT_MS = 50.0
FANOUT_FACTOR = 2.0
ASKED_RATE_SHARE = 0.98
PG_CPU_FACTOR = 1.3
IDLE_KB = 25.0
IDLE_RETURN = 0.20
BIG_SNAPSHOT_MB = 200.0
WRITES_FACTOR = 0.7
NOTIFY_COPY_FACTOR = 0.8
PAYLOAD_FACTOR = 0.8
BULK_FACTOR = 5.0
SEARCH_MS = 20.0
SCALEOUT_LOSS = 0.10
FAILOVER_SECONDS = 5.0
