"""The machine the benchmarks run on: which CPU runs what, and what the machine is.

The layout the issue's table was measured with: the server under test alone on
CPU 0, and everything else (PostgreSQL, the writer, pgbench, the SSE clients and
the coordinator) on CPU 1. The coordinator pins itself to the load CPUs before it
starts anything, so PostgreSQL, pgbench and every spawned actor inherit them
(sched_setaffinity survives fork and exec); a server process is re-pinned to the
server CPUs in its preexec hook. That is what `taskset -c 0` would do, without
depending on util-linux.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = (
    "litestar",
    "uvicorn",
    "uvloop",
    "httptools",
    "psycopg",
    "broadcaster",
    "sse-starlette",
    "starlette",
    "asyncpg",
)


@dataclass(frozen=True)
class Layout:
    """CPU sets for the server under test and for everything else; empty sets: no pinning."""

    server: frozenset[int]
    load: frozenset[int]

    @classmethod
    def choose(cls, pin: bool) -> Layout:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            if pin:
                print("  warning: fewer than 2 CPUs, nothing is pinned", file=sys.stderr)
            return cls(frozenset(), frozenset())
        return cls(frozenset({cpus[0]}), frozenset({cpus[1]}))

    @property
    def pinned(self) -> bool:
        return bool(self.server)

    def pin_self_to_load(self) -> None:
        """The coordinator and all it starts from now on (PostgreSQL, pgbench, actors) run on the load CPUs."""
        if self.pinned:
            os.sched_setaffinity(0, self.load)

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned"
        return (
            f"server under test on CPU {cpus(self.server)}; "
            f"PostgreSQL, writer, clients, pgbench on CPU {cpus(self.load)}"
        )


def cpus(cpu_set: frozenset[int] | set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpu_set))


def affinity_of(pid: int) -> str:
    try:
        return cpus(os.sched_getaffinity(pid))
    except OSError:
        return "?"


def raise_fd_limit() -> None:
    """`ulimit -n` up to the hard limit: thousands of sockets in one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def load1() -> str:
    """The 1-minute load average."""
    return Path("/proc/loadavg").read_text().split()[0]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "sql"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + (" (src/ or sql/ modified)" if dirty else "")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def describe(layout: Layout) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": round(memory_gb(), 1),
        "kernel": platform.release(),
        "user": "root" if os.geteuid() == 0 else str(os.geteuid()),
        "layout": layout.describe(),
        "code": git_revision(),
        "versions": versions(),
    }
