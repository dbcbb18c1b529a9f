"""pgbench as the writer of the write-rate rows: a script, N connections, T seconds, transactions/s.

Every transaction is one statement in autocommit (pgbench's default), prepared
(`-M prepared`), with no think time, so transactions/s is commits/s. pgbench runs
on the load CPUs like every other client; its threads are min(connections, 2).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cluster import pg_tool


@dataclass(frozen=True)
class Result:
    tps: float
    transactions: int
    failed: int


def run(url: str, script: Path, connections: int, seconds: float, pg_bin: Path | None = None) -> Result:
    cmd = [
        pg_tool("pgbench", pg_bin),
        "-n",  # no vacuum of pgbench's own tables, which do not exist here
        "-M",
        "prepared",
        "-c",
        str(connections),
        "-j",
        str(min(connections, 2)),
        "-T",
        str(max(1, round(seconds))),
        "-f",
        str(script),
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 120)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({' '.join(cmd)}):\n{out}")
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    count = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if not tps or not count:
        raise RuntimeError(f"cannot read pgbench's output:\n{out}")
    return Result(float(tps.group(1)), int(count.group(1)), int(failed.group(1)) if failed else 0)
