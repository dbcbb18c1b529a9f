"""The servers under test, as subprocesses pinned to their CPUs: `pgactivity serve` or the typical app.

A Server is one process on one port; a ServerGroup is several of them on one
database (the scale-out benchmark of issue 14 runs 1, 16 and 64 of them, in LISTEN
or broker mode, with `env` carrying the mode's settings). Both uvicorn with uvloop
and httptools. Tokens are HS256 JWTs with the organization in `org_id`, signed
with the secret every server gets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jwt

import meters
from cluster import PGACTIVITY, TYPICAL
from machine import affinity_of, raise_fd_limit

BENCH = Path(__file__).resolve().parent
SECRET = "bench-secret-with-enough-entropy-0123456789abcdef"


def token_for(org: str) -> str:
    now = int(time.time())
    return jwt.encode({"org_id": org, "iat": now, "exp": now + 6 * 3600}, SECRET, algorithm="HS256")


def org_of(token: str) -> str:
    return str(jwt.decode(token, SECRET, algorithms=["HS256"])["org_id"])


@dataclass
class Server:
    kind: str  # PGACTIVITY or TYPICAL
    database_url: str
    workdir: Path
    cpus: frozenset[int] = frozenset()  # empty: inherit the coordinator's
    env: dict[str, str] = field(default_factory=dict)  # e.g. PGACTIVITY_* settings
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        if self.kind == PGACTIVITY:
            script = Path(sys.executable).parent / "pgactivity"
            base = [str(script)] if script.exists() else [sys.executable, "-m", "pgactivity.cli"]
            return [*base, "serve", "--port", str(self.port)]
        if self.kind == TYPICAL:
            return [sys.executable, str(BENCH / "typical_app.py"), "--port", str(self.port)]
        raise ValueError(self.kind)

    def _preexec(self) -> None:
        raise_fd_limit()
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def launch(self) -> None:
        """Start the process; `wait_ready` waits for it to serve."""
        from pgactivity.embedded import free_port

        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_")}
        env.update(
            DATABASE_URL=self.database_url,
            PGACTIVITY_JWT_SECRET=SECRET,
            BENCH_JWT_SECRET=SECRET,
            PYTHONUNBUFFERED="1",
            **self.env,
        )
        self.log_path = self.workdir / f"{self.kind}-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=self._preexec,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None
        path = "/readyz" if self.kind == PGACTIVITY else "/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.kind} server not ready:\n{self.log()}")

    def start(self) -> Server:
        self.launch()
        self.wait_ready()
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cpu(self) -> float:
        return meters.cpu_seconds(self.pid)

    def rss(self) -> int:
        return meters.rss_bytes(self.pid)

    def affinity(self) -> str:
        return affinity_of(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class ServerGroup:
    """Several servers of one kind on one database, started together; clients are spread over `ports`."""

    def __init__(self, servers: Iterable[Server]) -> None:
        self.servers = list(servers)

    @classmethod
    def of(
        cls,
        n: int,
        kind: str,
        database_url: str,
        workdir: Path,
        cpus: frozenset[int] = frozenset(),
        env: dict[str, str] | None = None,
    ) -> ServerGroup:
        return cls(Server(kind, database_url, workdir, cpus, dict(env or {})) for _ in range(n))

    @property
    def ports(self) -> Sequence[int]:
        return [s.port for s in self.servers]

    def start(self, timeout: float = 120) -> ServerGroup:
        for s in self.servers:
            s.launch()
        for s in self.servers:
            s.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def cpu(self) -> float:
        return sum(s.cpu() for s in self.servers)

    def rss(self) -> int:
        return sum(s.rss() for s in self.servers)

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
