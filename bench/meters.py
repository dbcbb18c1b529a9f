"""What the coordinator reads from /proc: CPU time, RSS and peak RSS of the processes it watches.

CPU is utime + stime from /proc/<pid>/stat. A process's exited, reaped children
show up in its own cutime + cstime, which is how the CPU of PostgreSQL backends
that ended during a measurement is still counted (see Cluster.postgres_cpu). A
backend that exits between the listing of /proc and the reading of its parent
could be missed or counted twice, so the actors keep their connections open
until the coordinator has taken its last reading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int, *, exited_children: bool = False) -> float:
    """utime + stime of one process (and of its reaped children), 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if exited_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def cpu_of(pids: Iterable[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def children_of(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                pids.append(int(entry.name))
    return pids


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


def rss_bytes(pid: int) -> int:
    return _status_kb(pid, "VmRSS:") * 1024


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the highest RSS since the process started or since reset_peak_rss."""
    return _status_kb(pid, "VmHWM:") * 1024


def reset_peak_rss(pid: int) -> None:
    """Make VmHWM start again from the current RSS (Linux >= 4.0, own processes or root)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def established(port: int) -> int:
    """TCP connections in state ESTABLISHED whose local port is `port` (a server's clients), from /proc/net."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


class CpuMeter:
    """CPU seconds per role between start() and stop(). A role is a function returning the
    cumulative CPU seconds of what it stands for (a server, PostgreSQL, the clients)."""

    def __init__(self, roles: dict[str, Callable[[], float]]) -> None:
        self.roles = dict(roles)
        self._start: dict[str, float] = {}
        self._machine = (0.0, 0.0)
        self._t = 0.0

    def start(self) -> None:
        self._start = {role: get() for role, get in self.roles.items()}
        self._machine = machine_busy()
        self._t = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Per role: `<role>_cpu_s` (seconds) and `cpu_<role>` (% of one core); `cpu_machine`: % of all CPUs."""
        end = {role: get() for role, get in self.roles.items()}
        busy, total = machine_busy()
        elapsed = max(1e-9, time.monotonic() - self._t)
        out: dict[str, float] = {"meter_s": elapsed}
        for role in self.roles:
            used = end[role] - self._start.get(role, end[role])
            out[f"{role}_cpu_s"] = used
            out[f"cpu_{role}"] = 100 * used / elapsed
        out["cpu_machine"] = 100 * (busy - self._machine[0]) / max(1.0, total - self._machine[1])
        return out
