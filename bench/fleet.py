"""Many SSE clients: raw sockets on uvloop (asyncio.Protocol), thousands per process.

Client k belongs to organization k mod len(organizations), with a JWT of its own
organization, and connects to server port ports[(k // len(organizations)) mod
len(ports)]: with several servers (issue 14's scale-out), every server gets
clients of every organization. Each client records, for every token `"~<n>~"`
it receives, the token and the time (time.monotonic()) its bytes arrived, and it
counts the bytes it received. Nothing is parsed beyond that: the scan keeps only
the bytes after the last quote between reads, so its cost is linear in the bytes
however long a line is (a snapshot of 120 MB is one line).

A client is "ready" once it has its response headers (the typical app sends
nothing else until an event), or, when a ready marker is given (pgactivity:
`"snapshot"`), once the SSE frame holding the marker has been received whole.

The typical app needs one workaround to be measured at all: broadcaster's
`subscribe` runs two LISTENs at once on its single asyncpg connection when two
clients of a new organization connect together, and the loser gets no events.
With `first_alone` the fleet connects one client per organization first, one at
a time, then the rest.
"""

from __future__ import annotations

import asyncio
import re
import resource
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from actors import Actor, commands, run_actor, uvloop_runner
from machine import raise_fd_limit
from servers import org_of, token_for

TOKEN_RE = re.compile(rb'"~(\d+)~"')
TOKEN_TAIL = 24  # longer than any token
FRAME_ENDS = (b"\n\n", b"\n\r\n")
SNAPSHOT_MARKER = b'"snapshot"'
STREAM_PATH = "/api/activity/stream"


@dataclass
class FleetSpec:
    clients: list[tuple[str, int]]  # (JWT, port) per client
    ready_marker: bytes | None
    scan_tokens: bool = True
    first_alone: bool = False
    path: str = STREAM_PATH
    concurrency: int = 100
    ready_timeout: float = 120


class _Stats:
    def __init__(self) -> None:
        self.failed = 0
        self.lost = 0
        self.stopping = False


class SSEClient(asyncio.Protocol):
    def __init__(self, stats: _Stats, org: str, port: int, request: bytes, spec: FleetSpec) -> None:
        self.stats = stats
        self.org = org
        self.port = port
        self.request = request
        self.marker = spec.ready_marker
        self.scan = spec.scan_tokens
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.status = 0
        self.started = time.monotonic()
        self.ready_at = 0.0
        self.marker_seen = False
        self.look = b""
        self.tail = b""
        self.nbytes = 0
        self.toks = array("q")
        self.times = array("d")
        self.ready_event = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.ready_at > 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def _set_ready(self, now: float) -> None:
        self.ready_at = now
        self.ready_event.set()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.nbytes += len(data)
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head.split(b" ", 2)[1])
            data, self.head = self.head[end + 4 :], b""
            if self.status != 200:
                self.stats.failed += 1
                self.ready_event.set()
                assert self.transport is not None
                self.transport.close()
                return
            if self.marker is None:
                self._set_ready(now)
        if not self.ready:
            self._look_for_ready(data, now)
        if self.scan:
            buf = self.tail + data if self.tail else data
            found = TOKEN_RE.findall(buf)
            if found:
                self.toks.extend(map(int, found))
                self.times.extend([now] * len(found))
            # A token cut by this read starts at the last quote; a complete one ends with it.
            q = buf.rfind(b'"')
            self.tail = buf[q:] if q >= 0 and len(buf) - q < TOKEN_TAIL else b""

    def _look_for_ready(self, data: bytes, now: float) -> None:
        assert self.marker is not None
        buf = self.look + data
        if not self.marker_seen:
            i = buf.find(self.marker)
            if i < 0:
                self.look = buf[-len(self.marker) :]
                return
            self.marker_seen = True
            buf = buf[i + len(self.marker) :]
        if any(end in buf for end in FRAME_ENDS):
            self.look = b""
            self._set_ready(now)
        else:
            self.look = buf[-2:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stats.stopping:
            self.stats.lost += 1
        self.ready_event.set()


def fleet_main(conn: Connection, spec: FleetSpec) -> None:
    raise_fd_limit()
    run_actor(conn, lambda: uvloop_runner().run(_fleet(conn, spec)))


async def _fleet(conn: Connection, spec: FleetSpec) -> None:
    loop = asyncio.get_running_loop()
    queue = await commands(conn)
    stats = _Stats()
    clients: list[SSEClient] = []
    limit = asyncio.Semaphore(spec.concurrency)
    started = time.monotonic()

    async def connect(token: str, port: int) -> None:
        org = org_of(token)
        request = (
            f"GET {spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        async with limit:
            try:
                _, client = await loop.create_connection(
                    lambda: SSEClient(stats, org, port, request, spec), "127.0.0.1", port
                )
            except OSError:
                stats.failed += 1
                return
            clients.append(client)
            try:
                await asyncio.wait_for(client.ready_event.wait(), spec.ready_timeout)
            except TimeoutError:
                stats.failed += 1

    todo = list(spec.clients)
    if spec.first_alone:
        seen: set[tuple[str, int]] = set()
        for token, port in list(todo):
            key = (org_of(token), port)
            if key not in seen:
                seen.add(key)
                todo.remove((token, port))
                await connect(token, port)
                await asyncio.sleep(0.3)  # broadcaster LISTENs after the headers are sent, one at a time
        conn.send(("firsts", None))
    await asyncio.gather(*(connect(t, p) for t, p in todo))
    ready = sum(1 for c in clients if c.ready)
    conn.send(("ready", {"ready": ready, "failed": stats.failed, "seconds": time.monotonic() - started}))
    while True:
        command = await queue.get()
        if command == "count":
            conn.send(("count", {"tokens": sum(len(c.toks) for c in clients), "bytes": sum(c.nbytes for c in clients)}))
        elif command == "stop":
            stats.stopping = True
            for c in clients:
                if c.transport is not None:
                    c.transport.close()
            await asyncio.sleep(0.2)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            records = [
                (c.org, c.port, c.toks.tobytes(), c.times.tobytes(), c.nbytes, c.ready_at - c.started)
                for c in clients
                if c.ready
            ]
            conn.send(("stop", {"clients": records, "lost": stats.lost, "cpu": usage.ru_utime + usage.ru_stime}))
            return


@dataclass
class ClientRecord:
    org: str
    port: int
    toks: array[int]
    times: array[float]
    nbytes: int
    ready_s: float  # from the connect call to ready


@dataclass
class Received:
    """What every ready client received."""

    clients: list[ClientRecord] = field(default_factory=list)
    lost: int = 0


class Fleet:
    """n clients over `procs` processes; see the module docstring for who connects where."""

    def __init__(
        self,
        ports: Sequence[int],
        organizations: Sequence[str],
        n: int,
        *,
        procs: int = 1,
        ready_marker: bytes | None,
        first_alone: bool = False,
        scan_tokens: bool = True,
        concurrency: int = 100,
        assignment: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        """With `assignment`, a list of (organization, port), one client each, in place of the rule above."""
        if assignment is None:
            n_orgs = len(organizations)
            assignment = [(organizations[k % n_orgs], ports[(k // n_orgs) % len(ports)]) for k in range(n)]
        jwts = {org: token_for(org) for org in {org for org, _ in assignment}}
        clients = [(jwts[org], port) for org, port in assignment]
        n = len(clients)
        self.n = n
        self.actors: list[Actor] = []
        for p in range(min(procs, n)):
            spec = FleetSpec(clients[p::procs], ready_marker, scan_tokens, first_alone, concurrency=concurrency)
            actor = Actor(fleet_main, spec)
            if first_alone:  # one process at a time: broadcaster cannot LISTEN twice at once
                actor.expect("firsts", 300)
            self.actors.append(actor)

    @classmethod
    def assigned(cls, assignment: Sequence[tuple[str, int]], **options: Any) -> Fleet:
        """One client per (organization, port) in `assignment` (the scale-out rows choose who goes where)."""
        return cls((), (), 0, assignment=assignment, **options)

    def pids(self) -> list[int]:
        return [a.pid for a in self.actors]

    def wait_ready(self, timeout: float = 600) -> dict[str, float]:
        infos = [a.expect("ready", timeout) for a in self.actors]
        out = {
            "ready": sum(i["ready"] for i in infos),
            "failed": sum(i["failed"] for i in infos),
            "seconds": max(i["seconds"] for i in infos),
        }
        if out["ready"] < self.n:
            print(f"  warning: only {out['ready']} of {self.n} clients connected", file=sys.stderr)
        return out

    def count(self) -> tuple[int, int]:
        """(tokens, bytes) received so far by all clients."""
        replies = [a.ask("count") for a in self.actors]
        return sum(r["tokens"] for r in replies), sum(r["bytes"] for r in replies)

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
        """Close every connection; what each client received."""
        received = Received()
        for a in self.actors:
            reply = a.ask("stop")
            received.lost += reply["lost"]
            for org, port, tb, mb, nbytes, ready_s in reply["clients"]:
                toks, times = array("q"), array("d")
                toks.frombytes(tb)
                times.frombytes(mb)
                received.clients.append(ClientRecord(org, port, toks, times, nbytes, ready_s))
            a.join()
        return received
