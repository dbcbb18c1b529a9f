"""CPU instructions one write costs PostgreSQL, counted by valgrind (callgrind), not timed.

    python bench/instructions.py                  # start, insert, copy, progress, update
    python bench/instructions.py start progress   # some setups only
    python bench/instructions.py --variant my.sql start   # with SQL applied to the database first

The pgbench rows (g, h, i, n) time commits on a shared host whose speed moves by a third
within half an hour; a change of a few per cent to a trigger cannot be told apart there.
This counts instead: the setups of bench_writes.py (the same tables, values and template
databases), each write a prepared statement in its own transaction, run by a single-user
PostgreSQL backend (`postgres --single`, no server, no client) under callgrind. Two sessions
of N0 and N1 writes start from fresh copies of one database; the difference of their
instruction counts over N1 - N0 is the cost of one write, without the session's start.
The same inputs give the same count to within a few hundred instructions.

What it leaves out: the kernel (the WAL flush, the NOTIFY's signal), other processes (the
WAL writer, autovacuum), and what an instruction costs (cache misses, the NOTIFY lock
waits of rows g and h at 16 connections). A guide to what changed, not a row of the table.

Needs valgrind (Debian's `valgrind`); about 20 s a setup.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_writes
from cluster import Cluster
from pgactivity.embedded import SYSTEM_USER, bin_dir

N0, N1 = 300, 1300
# bench_writes.py's pgbench scripts, each a prepared statement: its last line, with pgbench's
# two variables (the organization or running activity, and the random number) as $1 and $2.
PGBENCH_VARIABLE = re.compile(r"(?<!:):(org|k|s|r)\b")
PREPARE = {
    setup: PGBENCH_VARIABLE.sub(lambda m: "$1" if m.group(1) in ("org", "k") else "$2", script.splitlines()[-1])
    .strip()
    .rstrip(";")
    for setup, script in bench_writes.SCRIPTS.items()
    if setup != "byref"  # start's statement on another database: bench_writes measures it, not this
}
ON_RUNNING = ("progress", "update")  # these update 1000 running activities (bench_writes.RUNNING_SQL)


class SingleUser:
    """`postgres --single` on a stopped cluster's data directory, as its owner."""

    def __init__(self, cluster: Cluster) -> None:
        self.data_dir = cluster.embedded.data_dir
        self.postgres = str(Path(cluster.pg_bin or _wheel_bin()) / "postgres")
        self.as_root = os.geteuid() == 0  # then as the embedded cluster's system user, as it runs

    def run(self, database: str, statements: list[str], callgrind_out: Path | None = None) -> str:
        # -j: a statement ends with a semicolon and an empty line, so none may hold an empty line.
        text = "".join(re.sub(r"\n\s*\n", "\n", s.strip().rstrip(";")) + ";\n\n" for s in statements)
        cmd = [self.postgres, "--single", "-j", "-D", str(self.data_dir), "-c", "fsync=off", database]
        if callgrind_out is not None:
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind_out}", *cmd]
        kwargs: dict[str, object] = {"user": SYSTEM_USER} if self.as_root else {}
        proc = subprocess.run(cmd, input=text, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
        out = proc.stdout + proc.stderr
        if proc.returncode != 0 or re.search(r"\b(ERROR|FATAL):", out):
            raise RuntimeError(f"postgres --single failed:\n{out[-4000:]}")
        return out


def _wheel_bin() -> Path:
    return bin_dir()


def _instructions(callgrind_out: Path) -> int:
    for line in callgrind_out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {callgrind_out}")


def _session(setup: str, writes: int) -> list[str]:
    rnd = random.Random(7)  # the same writes in every session: N0's are N1's first
    high = 1000 if setup in ON_RUNNING else 100  # running activity, or organization
    return [f"PREPARE w(int, int) AS {PREPARE[setup]}"] + [
        f"EXECUTE w({rnd.randint(1, high)}, {rnd.randint(1, 100_000_000)})" for _ in range(writes)
    ]


def per_write(single: SingleUser, setup: str, variant: str | None, workdir: Path) -> float:
    template = bench_writes.TEMPLATE_OF.get(setup, bench_writes.TYPICAL_TEMPLATE)
    single.run("postgres", ["DROP DATABASE IF EXISTS measured_base WITH (FORCE)"])
    single.run("postgres", [f"CREATE DATABASE measured_base TEMPLATE {template}"])
    setup_sql = [variant] if variant else []
    if setup in ON_RUNNING:
        setup_sql += [bench_writes.RUNNING_SQL, "VACUUM ANALYZE agent_activities"]
    if setup_sql:
        single.run("measured_base", setup_sql)
    counts = []
    for writes in (N0, N1):
        single.run("postgres", ["DROP DATABASE IF EXISTS measured WITH (FORCE)"])
        single.run("postgres", ["CREATE DATABASE measured TEMPLATE measured_base"])
        out = workdir / f"callgrind.{setup}.{writes}"
        single.run("measured", _session(setup, writes), callgrind_out=out)
        counts.append(_instructions(out))
    return (counts[1] - counts[0]) / (N1 - N0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setups", nargs="*", help=f"some of {', '.join(PREPARE)} (default: all)")
    parser.add_argument("--pg-bin", type=Path, help="another PostgreSQL's bin directory")
    parser.add_argument("--variant", type=Path, help="SQL applied to each measured database first")
    args = parser.parse_args()
    args.setups = args.setups or list(PREPARE)
    unknown = [s for s in args.setups if s not in PREPARE]
    if unknown:
        parser.error(f"unknown setup {unknown[0]!r}; choose from {', '.join(PREPARE)}")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    variant = args.variant.read_text() if args.variant else None
    cluster = Cluster(args.pg_bin).start()
    workdir = Path(tempfile.mkdtemp(prefix="pgactivity-instructions-"))
    workdir.chmod(0o777)  # callgrind writes here as the cluster's owner
    try:
        bench_writes._templates(_Setups(cluster), args.setups)
        cluster.embedded.stop(mode="fast")
        single = SingleUser(cluster)
        results = {}
        for setup in args.setups:
            results[setup] = per_write(single, setup, variant, workdir)
            print(f"{setup:>9}  {results[setup]:10,.0f} instructions a write", flush=True)
        if "start" in results and "insert" in results:
            print(f"start / the typical app's insert: {results['start'] / results['insert']:.2f}")
        if "progress" in results and "update" in results:
            print(f"progress / the typical app's update: {results['progress'] / results['update']:.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(cluster.workdir, ignore_errors=True)
    return 0


class _Setups:
    """What bench_writes._templates reads of a Context: its cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster


if __name__ == "__main__":
    sys.exit(main())
