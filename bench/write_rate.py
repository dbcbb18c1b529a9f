"""Write cost of the event trigger: inserts/s into agent_activities, measured with pgbench.

    .venv/bin/python bench/write_rate.py [--seconds 2] [--rounds 3] [--clients 1,4,16,32]

One embedded PostgreSQL 18 with durable commits (fsync and synchronous_commit
on, as in production) and one database holding three identical tables
(same columns, constraints and indexes):

  ours    agent_activities with the real migrations: the guard trigger, the
          deferred event trigger (organization lock, counter row, event row, NOTIFY {org, seq})
  notify  the same table with only `AFTER INSERT FOR EACH ROW` + pg_notify('x', NEW.id::text)
  plain   the same table, no trigger

`ours` runs twice: every insert for one organization (`ours-1org`, all writers
queue on one organization's lock) and spread over 1000 organizations (`ours-many`).
One LISTEN connection drains both channels throughout, as a `pgactivity serve`
process would, and checks that every insert was notified.

Every insert is its own transaction (pgbench, prepared statements, no client
think time), so inserts/s is also commits/s. Each (setup, writers) pair is
measured once per round, setups innermost, and the table shows the median of
the rounds with their range: other load on the machine then weighs on every
setup alike and shows up as a wide range. The whole run takes about
rounds x 4 setups x 4 writer counts x seconds, plus ~20 s (110 s by default).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgactivity import migrations
from pgactivity.embedded import EmbeddedPostgres, bin_dir

SETUP_SQL = """
CREATE TABLE notify_activities (LIKE agent_activities INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
CREATE TABLE plain_activities (LIKE agent_activities INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
CREATE FUNCTION notify_activities_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('x', NEW.id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER notify_activities_notify AFTER INSERT ON notify_activities
    FOR EACH ROW EXECUTE FUNCTION notify_activities_notify();
"""

INSERT = (
    "INSERT INTO {table} (organization_id, agent_type, agent_name, input_data) "
    "VALUES ({org}, 'executor', 'executor-high', '{{\"prompt\": \"Implement feature X\"}}');\n"
)
MANY_ORGS = "\\set org random(1, 1000)\n" + INSERT.replace("{org}", "'org-' || :org::text")
ONE_ORG = INSERT.replace("{org}", "'org-1'")


@dataclass(frozen=True)
class Setup:
    name: str
    table: str
    script: str
    channel: str | None  # the NOTIFY channel its inserts must reach


SETUPS = (
    Setup("ours-1org", "agent_activities", ONE_ORG, "agent_activity"),
    Setup("ours-many", "agent_activities", MANY_ORGS, "agent_activity"),
    Setup("notify", "notify_activities", MANY_ORGS, "x"),
    Setup("plain", "plain_activities", MANY_ORGS, None),
)

TABLES = "agent_activities, agent_activity_events, agent_activity_counters, notify_activities, plain_activities"


class Listener(threading.Thread):
    """One LISTEN connection on both channels, counting what it receives."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="listener")
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN agent_activity")
        self.conn.execute("LISTEN x")
        self.counts: dict[str, int] = {"agent_activity": 0, "x": 0}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for note in self.conn.notifies(timeout=0.5):
                self.counts[note.channel] += 1

    def stop(self) -> None:
        self._done.set()
        self.join(5)
        self.conn.close()


def pgbench(url: str, script: Path, clients: int, seconds: float) -> tuple[float, int]:
    """Run pgbench; returns (transactions/s, transactions)."""
    cmd = [
        str(bin_dir() / "pgbench"),
        "-n",  # no vacuum of pgbench's own tables
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(int(seconds)),
        "-f",
        str(script),
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 120)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{out}")
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    count = re.search(r"number of transactions actually processed: (\d+)", out)
    if not tps or not count:
        raise RuntimeError(f"cannot read pgbench output:\n{out}")
    return float(tps.group(1)), int(count.group(1))


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def plateau(rates: dict[int, float]) -> tuple[int, float]:
    """The smallest writer count after which more writers add less than 10 %."""
    counts = sorted(rates)
    for i, n in enumerate(counts):
        if all(rates[m] < rates[n] * 1.10 for m in counts[i + 1 :]):
            return n, max(rates[m] for m in counts[i:])
    return counts[-1], rates[counts[-1]]


def spread(values: list[float]) -> str:
    return f"({min(values):.0f}-{max(values):.0f})"


def report(
    samples: dict[str, dict[int, list[float]]], client_counts: list[int], loads: list[float], args: argparse.Namespace
) -> None:
    med = {name: {c: statistics.median(v) for c, v in by.items()} for name, by in samples.items()}
    print(f"\ninserts/s, median of {args.rounds} x {args.seconds} s (min-max); every insert is one commit\n")
    header = f"{'writers':>7} | " + " | ".join(f"{s.name:^17}" for s in SETUPS) + " | ours/notify (1org, many)"
    print(header)
    print("-" * len(header))
    for c in client_counts:
        cells = " | ".join(f"{med[s.name][c]:6.0f} {spread(samples[s.name][c]):<11}" for s in SETUPS)
        ratios = f"{med['ours-1org'][c] / med['notify'][c]:4.2f}, {med['ours-many'][c] / med['notify'][c]:4.2f}"
        print(f"{c:>7} | {cells} | {ratios}")
    print()
    for name in ("notify", "ours-many", "ours-1org", "plain"):
        n, rate = plateau(med[name])
        print(f"{name:>10}: more writers stop adding throughput at {n} (best {rate:.0f} inserts/s)")
    worst = min(min(med["ours-many"][c], med["ours-1org"][c]) / med["notify"][c] for c in client_counts)
    verdict = "holds" if worst >= 0.5 else "does NOT hold"
    print(f"target ours >= 0.5 x notify: {verdict} (worst median ratio {worst:.2f})")
    print(f"load average (1 min) during the run: {min(loads):.2f}-{max(loads):.2f}; at end {os.getloadavg()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=2, help="seconds per measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per setup and writer count (default 3)")
    parser.add_argument("--clients", default="1,4,16,32", help="writer connections (default 1,4,16,32)")
    args = parser.parse_args(argv)
    client_counts = [int(c) for c in args.clients.split(",")]

    root = Path(tempfile.mkdtemp(prefix="pgactivity-write-rate-", dir="/tmp"))
    server = EmbeddedPostgres(root / "pgdata", fast_unsafe=False)
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()}", flush=True)
    server.start()
    listener: Listener | None = None
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
            version = conn.execute("SHOW server_version").fetchone()
            durability = conn.execute(
                "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings "
                "WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers')"
            ).fetchone()
        print(f"PostgreSQL {version[0] if version else '?'}: {durability[0] if durability else '?'}", flush=True)
        url = server.url("bench")
        migrations.migrate_up(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SETUP_SQL)
        scripts = {}
        for setup in SETUPS:
            path = root / f"{setup.name}.sql"
            path.write_text(setup.script.format(table=setup.table))
            scripts[setup.name] = path
        listener = Listener(url)
        listener.start()

        samples: dict[str, dict[int, list[float]]] = {s.name: {c: [] for c in client_counts} for s in SETUPS}
        loads: list[float] = []
        for rnd in range(1, args.rounds + 1):
            for clients in client_counts:
                loads.append(os.getloadavg()[0])
                for setup in SETUPS:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(f"TRUNCATE {TABLES} CASCADE")
                        conn.execute("CHECKPOINT")
                    before = dict(listener.counts)
                    tps, count = pgbench(url, scripts[setup.name], clients, args.seconds)
                    samples[setup.name][clients].append(tps)
                    if setup.channel is not None:
                        channel = setup.channel
                        expected = before[channel] + count
                        if not wait_for(lambda ch=channel, n=expected: listener.counts[ch] >= n, 30):
                            got = listener.counts[channel] - before[channel]
                            raise RuntimeError(f"{setup.name}: only {got} of {count} inserts were notified")
                    print(f"  round {rnd} {setup.name:>10} {clients:>3} writers: {tps:8.0f} inserts/s", flush=True)
        report(samples, client_counts, loads, args)
    finally:
        if listener is not None:
            listener.stop()
        server.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
