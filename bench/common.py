"""What the benchmarks share: a throwaway PostgreSQL, the servers under test, the
paced writer, the raw-LISTEN ceiling, many SSE clients, and the arithmetic.

Every actor is its own process (multiprocessing, spawn): the server, the
writer, the clients, and this coordinator, which only starts and stops them and
reads /proc. Timestamps are `time.monotonic()`, one clock for all processes on
Linux.

How latency is matched: every write carries a unique token `~<n>~` in the field
it changes (`metadata` on insert, `message` on progress, `output_data` on
complete). The writer records the time each commit returned; a client records
the time each token first reached it. pgactivity's events carry exactly their
own token; the typical app's rows also carry the older tokens of the same
activity, which that client saw earlier, so "first time seen" is exact for both.
The raw ceiling sees only `{"org", "seq"}`; its (org, seq) are mapped to tokens
from the event log after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import jwt
import psycopg

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SECRET = "bench-secret-with-enough-entropy-0123456789abcdef"
TOKEN_RE = re.compile(rb"~(\d+)~")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MP = multiprocessing.get_context("spawn")
PGACTIVITY = "pgactivity"
TYPICAL = "typical"
CEILING = "ceiling"
CEILING_READ = "ceiling+read"


# -- machine ------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_cpu_seconds(pid: int, *, exited_children: bool = False) -> float:
    """utime + stime of one process (and of its exited children), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if exited_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def children_of(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                pids.append(int(entry.name))
    return pids


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


class CpuMeter:
    """CPU seconds per role between start() and stop(), as % of one core."""

    def __init__(self, roles: dict[str, Callable[[], list[int]] | Callable[[], float]]) -> None:
        self.roles = roles
        self._start: dict[str, float] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)
        self._t = 0.0

    def _sample(self) -> dict[str, float]:
        """A role is either a list of pids or a function returning CPU seconds."""
        out = {}
        for role, get in self.roles.items():
            value = get()
            out[role] = value if isinstance(value, float) else sum(proc_cpu_seconds(p) for p in value)
        return out

    def start(self) -> None:
        self._start = self._sample()
        self._machine = machine_busy()
        self._t = time.monotonic()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        busy, total = machine_busy()
        elapsed = time.monotonic() - self._t
        out = {f"cpu_{role}": 100 * (end[role] - self._start[role]) / elapsed for role in self.roles}
        out["cpu_machine"] = 100 * (busy - self._machine[0]) / max(1.0, total - self._machine[1])
        return out


# -- PostgreSQL -----------------------------------------------------------------


@dataclass
class Cluster:
    workdir: Path
    embedded: Any
    pgactivity_url: str
    typical_url: str

    def postgres_cpu(self) -> float:
        """CPU seconds of the whole cluster: the postmaster, its live backends and the exited ones."""
        pid = int((self.embedded.data_dir / "postmaster.pid").read_text().split()[0])
        return proc_cpu_seconds(pid, exited_children=True) + sum(proc_cpu_seconds(p) for p in children_of(pid))

    def stop(self) -> None:
        self.embedded.stop()


@contextlib.contextmanager
def cluster(keep: bool = False) -> Iterator[Cluster]:
    """A fresh PostgreSQL 18 (fsync off) with two databases: pgactivity's schema, and the typical app's."""
    import typical_app
    from pgactivity import migrations
    from pgactivity.embedded import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="pgactivity-bench-"))
    workdir.chmod(0o755)
    embedded = EmbeddedPostgres(workdir / "pg", fast_unsafe=True)
    embedded.start()
    try:
        with psycopg.connect(embedded.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE pgactivity")
            conn.execute("CREATE DATABASE typical")
        pg_url, typical_url = embedded.url("pgactivity"), embedded.url("typical")
        migrations.migrate_up(pg_url)
        typical_app.install_schema(typical_url)
        yield Cluster(workdir, embedded, pg_url, typical_url)
    finally:
        embedded.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def org_names(n: int) -> list[str]:
    return [f"org-{i:02d}" for i in range(n)]


def token_for(org: str) -> str:
    now = int(time.time())
    return jwt.encode({"org_id": org, "iat": now, "exp": now + 6 * 3600}, SECRET, algorithm="HS256")


# -- servers under test ---------------------------------------------------------


def _server_preexec() -> None:
    raise_fd_limit()  # `ulimit -n` for the server


@dataclass
class Server:
    kind: str  # PGACTIVITY or TYPICAL
    database_url: str
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return [self.pid]

    def command(self) -> list[str]:
        if self.kind == PGACTIVITY:
            script = Path(sys.executable).parent / "pgactivity"
            base = [str(script)] if script.exists() else [sys.executable, "-m", "pgactivity.cli"]
            return [*base, "serve", "--port", str(self.port)]
        return [sys.executable, str(BENCH / "typical_app.py"), "--port", str(self.port)]

    def start(self, timeout: float = 60) -> Server:
        from pgactivity.embedded import free_port

        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_")}
        env.update(
            DATABASE_URL=self.database_url,
            PGACTIVITY_JWT_SECRET=SECRET,
            BENCH_JWT_SECRET=SECRET,
            PYTHONUNBUFFERED="1",
            **self.env_extra,
        )
        self.log_path = self.workdir / f"{self.kind}-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_server_preexec,
            )
        path = "/readyz" if self.kind == PGACTIVITY else "/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.kind} server not ready:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


# -- processes and their control pipe ----------------------------------------------


class Actor:
    """A spawned process that talks over a pipe: it sends ("ready", info) then waits for commands."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.conn, child = MP.Pipe()
        self.proc = MP.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return [self.pid]

    def expect(self, kind: str, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"no {kind!r} from {self.proc.name} after {timeout}s")
        got, payload = self.conn.recv()
        if got == "error":
            raise RuntimeError(f"{self.proc.name} failed: {payload}")
        if got != kind:
            raise RuntimeError(f"expected {kind!r}, got {got!r}")
        return payload

    def ask(self, command: str, timeout: float = 120) -> Any:
        self.conn.send(command)
        return self.expect(command, timeout)

    def join(self) -> None:
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _run_actor(conn: Connection, body: Callable[[], None]) -> None:
    try:
        body()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", repr(exc)))
        raise


def _uvloop_runner() -> asyncio.Runner:
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


async def _commands(conn: Connection) -> asyncio.Queue[str]:
    """Commands from the coordinator, as an asyncio queue."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def readable() -> None:
        try:
            queue.put_nowait(conn.recv())
        except EOFError:
            loop.remove_reader(conn.fileno())
            queue.put_nowait("stop")

    loop.add_reader(conn.fileno(), readable)
    os.set_blocking(conn.fileno(), True)  # the event loop made it non-blocking; replies can be large
    return queue


# -- the writer ----------------------------------------------------------------------

SQL_START = """
INSERT INTO agent_activities (id, organization_id, session_id, agent_type, agent_name, category, input_data, metadata)
VALUES (%s, %s, %s, 'executor', 'executor-high', 'ultrabrain', '{"prompt": "Implement feature X"}', %s)
"""
SQL_PROGRESS = "UPDATE agent_activities SET message = %s, progress = %s WHERE id = %s"
SQL_COMPLETE = "UPDATE agent_activities SET status = 'completed', progress = 100, output_data = %s WHERE id = %s"
STEPS = 10  # per activity: start, 8 progress updates, complete


@dataclass
class WriterSpec:
    url: str
    organizations: list[str]
    rate: float
    duration: float
    token_base: int
    connections: int = 2


def writer_main(conn: Connection, spec: WriterSpec) -> None:
    _run_actor(conn, lambda: _uvloop_runner().run(_writer(conn, spec)))


async def _writer(conn: Connection, spec: WriterSpec) -> None:
    """Events at a fixed schedule (event i due at t0 + i/rate), one transaction each, from N connections."""
    total = int(spec.rate * spec.duration)
    commits = array("d", [math.nan]) * total
    orgs = array("H", [0]) * total
    n_orgs = len(spec.organizations)
    conns = [await psycopg.AsyncConnection.connect(spec.url, autocommit=True) for _ in range(spec.connections)]
    commands = await _commands(conn)
    conn.send(("ready", None))
    await commands.get()  # go
    t0 = time.monotonic()
    errors: list[str] = []

    async def worker(w: int, db: psycopg.AsyncConnection[Any]) -> None:
        # This worker owns its activities: no two connections ever update one row.
        current: dict[int, tuple[str, int]] = {}
        for i in range(w, total, spec.connections):
            delay = t0 + i / spec.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            org = i % n_orgs
            tok = f"~{spec.token_base + i}~"
            act_id, step = current.get(org, ("", 0))
            try:
                if step == 0:
                    act_id = str(uuid.uuid4())
                    session = f"ses-{w}-{org}"
                    metadata = json.dumps({"bench": tok})
                    await db.execute(SQL_START, (act_id, spec.organizations[org], session, metadata))
                elif step < STEPS - 1:
                    await db.execute(SQL_PROGRESS, (tok, step * 10, act_id))
                else:
                    await db.execute(SQL_COMPLETE, (json.dumps({"bench": tok}), act_id))
            except psycopg.Error as exc:
                errors.append(repr(exc))
                current.pop(org, None)
                continue
            commits[i] = time.monotonic()
            orgs[i] = org
            current[org] = (act_id, (step + 1) % STEPS)

    await asyncio.gather(*(worker(w, db) for w, db in enumerate(conns)))
    t1 = time.monotonic()
    conn.send(
        (
            "done",
            {
                "token_base": spec.token_base,
                "commits": commits.tobytes(),
                "orgs": orgs.tobytes(),
                "t0": t0,
                "t1": t1,
                "errors": errors[:5],
                "n_errors": len(errors),
            },
        )
    )
    await commands.get()  # "close": the coordinator has read the CPU counters while these backends lived
    for db in conns:
        await db.close()


@dataclass
class Written:
    """What a writer did: commit time and organization index per token."""

    token_base: int
    commits: array[float]
    orgs: array[int]
    t0: float
    t1: float
    n_errors: int

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Written:
        commits, orgs = array("d"), array("H")
        commits.frombytes(p["commits"])
        orgs.frombytes(p["orgs"])
        if p["n_errors"]:
            print(f"  writer errors: {p['n_errors']} e.g. {p['errors'][:2]}", file=sys.stderr)
        return cls(p["token_base"], commits, orgs, p["t0"], p["t1"], p["n_errors"])

    @property
    def committed(self) -> int:
        return sum(1 for t in self.commits if t == t)

    @property
    def achieved_rate(self) -> float:
        last = max((t for t in self.commits if t == t), default=self.t0)
        return self.committed / max(1e-9, last - self.t0)


# -- the raw ceiling: one psycopg connection doing LISTEN ---------------------------


SQL_READ_EVENT = "SELECT payload::text FROM agent_activity_events WHERE organization_id = %s AND seq = %s"


def ceiling_main(conn: Connection, url: str, read: bool = False) -> None:
    """One LISTEN connection, no HTTP; with `read`, a second connection also reads each event's log row."""

    def body() -> None:
        orgs: list[str] = []
        seqs = array("q")
        times = array("d")
        with psycopg.connect(url, autocommit=True) as db, psycopg.connect(url, autocommit=True) as reader:
            reader.execute("SET plan_cache_mode = force_generic_plan")
            db.execute("LISTEN agent_activity")
            conn.send(("ready", None))
            while not conn.poll():
                for notify in db.notifies(timeout=0.2):
                    data = json.loads(notify.payload)
                    if read:
                        reader.execute(SQL_READ_EVENT, (data["org"], int(data["seq"]))).fetchall()
                    times.append(time.monotonic())
                    orgs.append(data["org"])
                    seqs.append(int(data["seq"]))
        conn.recv()
        conn.send(("stop", {"orgs": orgs, "seqs": seqs.tobytes(), "times": times.tobytes()}))

    _run_actor(conn, body)


def ceiling_received(url: str, payload: dict[str, Any]) -> Received:
    """The ceiling's (org, seq, time) as one 'client' of (token, time), via the event log."""
    seqs, times = array("q"), array("d")
    seqs.frombytes(payload["seqs"])
    times.frombytes(payload["times"])
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT organization_id, seq, substring(payload::text from '~([0-9]+)~')::bigint FROM agent_activity_events"
        ).fetchall()
    token_of = {(org, seq): tok for org, seq, tok in rows if tok is not None}
    toks, ts = array("q"), array("d")
    for org, seq, t in zip(payload["orgs"], seqs, times, strict=True):
        tok = token_of.get((org, seq))
        if tok is not None:
            toks.append(tok)
            ts.append(t)
    return Received([("*", toks, ts)])


# -- many SSE clients in one process ---------------------------------------------------


@dataclass
class FleetSpec:
    port: int
    tokens: list[str]  # one JWT per client
    ready_marker: bytes | None  # bytes that mark "live" (pgactivity: the snapshot), None: the headers
    path: str = "/api/activity/stream"
    concurrency: int = 100
    first_alone: bool = False  # connect one client per organization first (broadcaster's subscribe race)


class SSEClient(asyncio.Protocol):
    """A raw-socket SSE client: records (token, time) for every token in each complete line it receives."""

    def __init__(self, fleet: _Fleet, org: str, request: bytes, ready_marker: bytes | None) -> None:
        self.fleet = fleet
        self.org = org
        self.request = request
        self.ready_marker = ready_marker
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.status = 0
        self.ready = False
        self.carry = b""
        self.toks = array("q")
        self.times = array("d")
        self.ready_event = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport
        transport.write(self.request)

    def _set_ready(self) -> None:
        self.ready = True
        self.ready_event.set()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head.split(b" ", 2)[1])
            data, self.head = self.head[end + 4 :], b""
            if self.status != 200:
                self.fleet.failed += 1
                self.ready_event.set()
                assert self.transport is not None
                self.transport.close()
                return
            if self.ready_marker is None:
                self._set_ready()
        buf = self.carry + data if self.carry else data
        cut = buf.rfind(b"\n") + 1
        self.carry = buf[cut:]
        if not self.ready and self.ready_marker is not None and self.ready_marker in buf:
            self._set_ready()
        toks, times = self.toks, self.times
        for m in TOKEN_RE.findall(buf, 0, cut):
            toks.append(int(m))
            times.append(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.fleet.stopping:
            self.fleet.lost += 1
        self.ready_event.set()


class _Fleet:
    def __init__(self) -> None:
        self.failed = 0
        self.lost = 0
        self.stopping = False


def fleet_main(conn: Connection, spec: FleetSpec) -> None:
    raise_fd_limit()
    _run_actor(conn, lambda: _uvloop_runner().run(_fleet(conn, spec)))


async def _fleet(conn: Connection, spec: FleetSpec) -> None:
    loop = asyncio.get_running_loop()
    commands = await _commands(conn)
    fleet = _Fleet()
    clients: list[SSEClient] = []
    limit = asyncio.Semaphore(spec.concurrency)
    started = time.monotonic()

    async def connect(token: str) -> None:
        org = _org_of(token)
        request = (
            f"GET {spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{spec.port}\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        async with limit:
            try:
                _, client = await loop.create_connection(
                    lambda: SSEClient(fleet, org, request, spec.ready_marker), "127.0.0.1", spec.port
                )
            except OSError:
                fleet.failed += 1
                return
            clients.append(client)
            try:
                await asyncio.wait_for(client.ready_event.wait(), 60)
            except TimeoutError:
                fleet.failed += 1

    tokens = list(spec.tokens)
    if spec.first_alone:
        seen: set[str] = set()
        firsts = [t for t in tokens if not (_org_of(t) in seen or seen.add(_org_of(t)))]  # type: ignore[func-returns-value]
        for t in firsts:
            await connect(t)
            await asyncio.sleep(0.3)  # broadcaster LISTENs after the headers are sent, one at a time
        for t in firsts:
            tokens.remove(t)
        conn.send(("firsts", None))
    await asyncio.gather(*(connect(t) for t in tokens))
    ready = sum(1 for c in clients if c.ready)
    conn.send(("ready", {"ready": ready, "failed": fleet.failed, "seconds": time.monotonic() - started}))
    while True:
        command = await commands.get()
        if command == "count":
            conn.send(("count", {"tokens": sum(len(c.toks) for c in clients), "lost": fleet.lost}))
        elif command == "stop":
            fleet.stopping = True
            for c in clients:
                if c.transport is not None:
                    c.transport.close()
            await asyncio.sleep(0.2)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(
                (
                    "stop",
                    {
                        "clients": [(c.toks.tobytes(), c.times.tobytes()) for c in clients if c.ready],
                        "orgs": [c.org for c in clients if c.ready],
                        "lost": fleet.lost,
                        "cpu": usage.ru_utime + usage.ru_stime,
                    },
                )
            )
            return


def _org_of(token: str) -> str:
    return str(jwt.decode(token, SECRET, algorithms=["HS256"])["org_id"])


class Fleet:
    """n SSE clients, client k in organization k % len(organizations), spread over `procs` processes."""

    def __init__(
        self,
        port: int,
        organizations: Sequence[str],
        n: int,
        *,
        procs: int,
        ready_marker: bytes | None,
        first_alone: bool = False,
    ) -> None:
        jwts = {org: token_for(org) for org in organizations}
        tokens = [jwts[organizations[k % len(organizations)]] for k in range(n)]
        self.actors = []
        for p in range(min(procs, n)):
            actor = Actor(fleet_main, FleetSpec(port, tokens[p::procs], ready_marker, first_alone=first_alone))
            if first_alone:  # one process at a time: broadcaster cannot LISTEN twice at once
                actor.expect("firsts", 120)
            self.actors.append(actor)
        self.n = n

    def pids(self) -> list[int]:
        return [a.pid for a in self.actors]

    def wait_ready(self, timeout: float = 300) -> dict[str, float]:
        infos = [a.expect("ready", timeout) for a in self.actors]
        out = {
            "ready": sum(i["ready"] for i in infos),
            "failed": sum(i["failed"] for i in infos),
            "seconds": max(i["seconds"] for i in infos),
        }
        if out["ready"] < self.n:
            print(f"  warning: only {out['ready']} of {self.n} clients connected", file=sys.stderr)
        return out

    def count(self) -> int:
        return sum(int(a.ask("count")["tokens"]) for a in self.actors)

    def drain(self, max_seconds: float = 20, quiet: float = 1.0) -> float:
        """Wait until the clients stop receiving (or max_seconds); returns the seconds waited."""
        started = time.monotonic()
        last = self.count()
        quiet_since = time.monotonic()
        while time.monotonic() - started < max_seconds:
            time.sleep(0.25)
            now = self.count()
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet:
                break
        return time.monotonic() - started

    def stop(self) -> Received:
        received = Received()
        for a in self.actors:
            p = a.ask("stop")
            received.lost += p["lost"]
            for org, (tb, mb) in zip(p["orgs"], p["clients"], strict=True):
                toks, times = array("q"), array("d")
                toks.frombytes(tb)
                times.frombytes(mb)
                received.clients.append((org, toks, times))
            a.join()
        return received


@dataclass
class Received:
    """Per client: its organization ("*" for the ceiling: every organization), tokens and first-seen times."""

    clients: list[tuple[str, array[int], array[float]]] = field(default_factory=list)
    lost: int = 0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def analyze(
    written: Written, organizations: Sequence[str], received: Received, window: tuple[float, float]
) -> dict[str, float]:
    """Latency of events committed in the window; deliveries received in the window, per second."""
    w0, w1 = window
    lo, hi = written.token_base, written.token_base + len(written.commits)
    commits = written.commits
    per_org: dict[str, int] = {}
    for org, _, _ in received.clients:
        per_org[org] = per_org.get(org, 0) + 1
    latencies: list[float] = []
    delivered = 0
    silent = 0
    for _, toks, times in received.clients:
        seen: set[int] = set()
        silent += not any(lo <= tok < hi for tok in toks)
        for tok, t in zip(toks, times, strict=True):
            if tok < lo or tok >= hi or tok in seen:
                continue
            seen.add(tok)
            c = commits[tok - lo]
            if c != c:  # a failed write
                continue
            if w0 <= t <= w1:
                delivered += 1
            if w0 <= c <= w1:
                latencies.append(t - c)
    expected = 0
    committed = 0
    for i, c in enumerate(commits):
        if w0 <= c <= w1:
            committed += 1
            expected += per_org.get(organizations[written.orgs[i]], 0) + per_org.get("*", 0)
    latencies.sort()
    span = max(1e-9, w1 - w0)
    return {
        "write_rate": committed / span,
        "expected_per_s": expected / span,
        "delivered_per_s": delivered / span,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p90_ms": 1000 * percentile(latencies, 0.90),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * latencies[-1] if latencies else math.nan,
        "undelivered": expected - len(latencies),
        "lost_connections": received.lost,
        "silent_clients": silent,
        "clients": len(received.clients),
    }


def run_phase(
    spec: WriterSpec, meter: CpuMeter, warmup: float
) -> tuple[Written, tuple[float, float], dict[str, float]]:
    """Run one writer to its end; the measurement window starts `warmup` seconds after it starts."""
    writer = Actor(writer_main, spec)
    writer.expect("ready", 60)
    meter.roles["writer"] = writer.pids
    writer.conn.send("go")
    time.sleep(warmup)
    w0 = time.monotonic()
    meter.start()
    payload = writer.expect("done", spec.duration * 3 + 60)
    cpu = meter.stop()
    writer.conn.send("close")
    writer.join()
    written = Written.from_payload(payload)
    return written, (w0, min(time.monotonic(), written.t1)), cpu


_token_bases = iter(range(10_000_000, 10**15, 10_000_000))


@dataclass
class Load:
    organizations: list[str]
    clients: int
    rates: list[float]
    duration: float
    warmup: float
    client_procs: int = 2
    writer_connections: int = 2
    settle: float = 1.0
    server_env: dict[str, str] = field(default_factory=dict)  # e.g. PGACTIVITY_* settings for the server


def run_system(system: str, cl: Cluster, load: Load) -> list[dict[str, Any]]:
    """Connect the clients once, then one writer phase per rate; a row of numbers per rate."""
    rows: list[dict[str, Any]] = []
    url = cl.typical_url if system == TYPICAL else cl.pgactivity_url

    def spec(rate: float) -> WriterSpec:
        return WriterSpec(
            url, load.organizations, rate, load.duration, next(_token_bases), connections=load.writer_connections
        )

    if system in (CEILING, CEILING_READ):
        for rate in load.rates:
            ceiling = Actor(ceiling_main, url, system == CEILING_READ)
            ceiling.expect("ready", 30)
            meter = CpuMeter({"server": ceiling.pids, "postgres": cl.postgres_cpu})
            written, window, cpu = run_phase(spec(rate), meter, load.warmup)
            time.sleep(0.5)
            received = ceiling_received(url, ceiling.ask("stop"))
            ceiling.join()
            rows.append(
                {"system": system, "rate": rate, **analyze(written, load.organizations, received, window), **cpu}
            )
            print_row(rows[-1])
        return rows

    server = Server(system, url, cl.workdir, env_extra=load.server_env).start()
    try:
        fleet = Fleet(
            server.port,
            load.organizations,
            load.clients,
            procs=load.client_procs,
            ready_marker=b'"snapshot"' if system == PGACTIVITY else None,
            first_alone=system == TYPICAL,
        )
        connected = fleet.wait_ready()
        print(f"  {system}: {connected['ready']} clients connected in {connected['seconds']:.1f}s", flush=True)
        time.sleep(load.settle)
        phases = []
        for rate in load.rates:
            meter = CpuMeter({"server": server.pids, "postgres": cl.postgres_cpu, "clients": fleet.pids})
            written, window, cpu = run_phase(spec(rate), meter, load.warmup)
            cpu["rss_mb"] = rss_bytes(server.pid) / 2**20  # at the writer's end, before the backlog drains
            drained = fleet.drain()
            phases.append((rate, written, window, cpu, drained))
            print(f"  {system} at {rate:g}/s: written, drained in {drained:.1f}s", flush=True)
        received = fleet.stop()
    finally:
        server.stop()
    for rate, written, window, cpu, drained in phases:
        numbers = analyze(written, load.organizations, received, window)
        rows.append({"system": system, "rate": rate, **numbers, **cpu, "drain_s": drained})
        print_row(rows[-1])
    return rows


ROW_COLUMNS = (
    "system",
    "rate",
    "write_rate",
    "clients",
    "expected_per_s",
    "delivered_per_s",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "undelivered",
    "silent_clients",
    "cpu_server",
    "cpu_postgres",
    "cpu_clients",
    "cpu_writer",
    "cpu_machine",
    "rss_mb",
)


def print_row(row: dict[str, Any]) -> None:
    print("  " + "  ".join(f"{c}={fmt(row[c])}" for c in ROW_COLUMNS if c in row), flush=True)


# -- output ------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str))


def header(title: str) -> dict[str, Any]:
    info = {"title": title, "load_before": loadavg(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(f"{title}\nmachine: {os.cpu_count()} CPUs, load average before: {info['load_before']}", flush=True)
    return info
