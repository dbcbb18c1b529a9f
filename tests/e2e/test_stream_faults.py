"""Faults: the LISTEN backend killed, PostgreSQL restarted, a client that never reads."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import PgServer
from tests.e2e.conftest import ServerFactory, ServerProcess
from tests.e2e.sse import SSEClient
from tests.e2e.writers import Writer, assert_exactly, last_seq, wait_until, write_batch, write_batch_in_one_transaction
from tests.helpers import run_psql

STREAM = "/api/activity/stream"
LISTENER_PID = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgactivity-listener' AND datname = current_database()"
)


def _listener_pids(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [int(r[0]) for r in conn.execute(LISTENER_PID).fetchall()]


def _readyz(server: ServerProcess) -> int:
    try:
        return httpx.get(f"{server.base_url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_listener_backend_terminated_while_writing_loses_nothing(server: ServerProcess) -> None:
    org = "org-kill"
    client = SSEClient(f"{server.base_url}{STREAM}", server.token(org)).start()
    writer = Writer(server.db_url, org, threads=2, pause=0.01)
    try:
        client.wait_for(lambda c: len(c.events) == 1)
        writer.start()
        killed: list[int] = []
        for round_ in range(3):
            if round_ == 2:
                # The last round with the writer stopped: the event written while the listener
                # is away is then the last one, and no later NOTIFY can wake the log tail for it.
                writer.stop()
            wait_until(lambda: len(_listener_pids(server.db_url)) == 1, what="the listener to (re)connect")
            pid = _listener_pids(server.db_url)[0]
            assert pid not in killed
            # Terminate and write at once (the listener waits ~0.1 s before it reconnects): this
            # event's NOTIFY goes nowhere; only the catch-up from the log can deliver it. (Not
            # pg_terminate_backend's wait: it polls every 100 ms, time enough to reconnect.)
            out = run_psql(
                server.db_url,
                f"SELECT pg_terminate_backend({pid});"
                "SELECT agent_activity_start(organization_id => 'org-kill', agent_type => 'after-kill');",
            )
            assert out.stdout.startswith("t"), out.stdout
            killed.append(pid)
            time.sleep(0.4)
        final = last_seq(server.db_url, org)
        client.wait_for(lambda c: c.last_event_id == str(final), timeout=30)
        time.sleep(0.3)
    finally:
        writer.stop()
        client.stop()
    assert client.connections == 1, "the client's stream must survive the listener's reconnects"
    assert_exactly(client.seqs(), 1, final)
    assert sum(e.data["agentType"] == "after-kill" for e in client.live()) == 3
    assert server.log().count("listener connected") >= 4


def test_a_lost_wake_up_is_repaired_by_the_idle_check(server: ServerProcess) -> None:
    """Regression: a NOTIFY that never reached the listener (psycopg < 3.2.4 drops those that
    arrive between two notifies() calls, e.g. during the idle ping) left its event undelivered
    until the organization's next write. The log is the truth: the idle check reads it."""
    org = "org-lost"
    client = SSEClient(f"{server.base_url}{STREAM}", server.token(org)).start()
    try:
        client.wait_for(lambda c: len(c.events) == 1)
        first = write_batch(server.db_url, org, 1)
        client.wait_for(lambda c: c.last_event_id == str(first))
        # An event appended to the log exactly as the trigger does, but whose NOTIFY is lost.
        run_psql(
            server.db_url,
            f"""
            WITH next AS (
                UPDATE agent_activity_counters SET last_seq = last_seq + 1
                WHERE organization_id = '{org}' RETURNING last_seq
            )
            INSERT INTO agent_activity_events (organization_id, seq, activity_id, type, payload)
            SELECT '{org}', next.last_seq, a.id, 'agent_progress',
                   jsonb_build_object('type', 'agent_progress', 'seq', next.last_seq, 'activityId', a.id,
                                      'organizationId', '{org}', 'agentType', a.agent_type,
                                      'data', jsonb_build_object('message', 'no notify', 'progress', 1))
            FROM next, agent_activities AS a WHERE a.organization_id = '{org}';
            """,
        )
        # PGACTIVITY_LISTENER_PING_SECONDS=1: repaired within a few seconds, with no other write.
        client.wait_for(lambda c: c.last_event_id == str(first + 1), timeout=20)
    finally:
        client.stop()
    assert client.live()[-1].data["data"]["message"] == "no notify"
    assert_exactly(client.seqs(), 1, first + 1)


def test_postgres_restart_readyz_goes_503_then_200_and_no_event_is_lost(
    server: ServerProcess, pg_server: PgServer
) -> None:
    if pg_server.embedded is None:
        pg_server.restart()  # skips: needs the embedded server
    org = "org-restart"
    client = SSEClient(f"{server.base_url}{STREAM}", server.token(org)).start()
    try:
        client.wait_for(lambda c: len(c.events) == 1)
        before = write_batch(server.db_url, org, 20)
        client.wait_for(lambda c: c.last_event_id == str(before))
        assert _readyz(server) == 200

        pg_server.embedded.stop()  # the downtime: nothing is written
        wait_until(lambda: _readyz(server) == 503, timeout=30, what="/readyz to report the database down")
        body = httpx.get(f"{server.base_url}/readyz", timeout=5).json()
        assert body["checks"]["database"] != "ok" or body["checks"]["listener"] != "connected"
        pg_server.restart()  # starts it again on the same port
        wait_until(lambda: _readyz(server) == 200, timeout=30, what="/readyz to recover")

        after = write_batch(server.db_url, org, 20)
        assert after == before + 20
        client.wait_for(lambda c: c.last_event_id == str(after), timeout=30)
        # Heartbeats went on through the outage (PGACTIVITY_HEARTBEAT_SECONDS=1).
        assert client.comments >= 2
    finally:
        client.stop()
    assert client.connections == 1, "the client's stream must survive a PostgreSQL restart"
    assert client.error is None
    assert_exactly(client.seqs(), 1, after)


def _vm_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


class PeakRss:
    """The highest RSS of a process while the block runs, sampled by a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.baseline = self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = _vm_rss_kb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _vm_rss_kb(self.pid))
            time.sleep(self.interval)

    @property
    def growth_kb(self) -> int:
        return self.peak - self.baseline


def _never_reading_client(server: ServerProcess, org: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A tiny receive window (set before connect so that it is the advertised one).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    request = (
        f"GET {STREAM} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {server.token(org)}\r\nAccept: text/event-stream\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


def _drain_until_stream_end(sock: socket.socket, timeout: float) -> bytes:
    """Read what the server sent until the end of the chunked response (or EOF); returns the last bytes."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    tail = b""
    try:
        while time.monotonic() < deadline and not tail.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            tail = (tail + chunk)[-256:]
    except (TimeoutError, ConnectionResetError):
        pass
    return tail


def _read_to_the_end(sock: socket.socket, timeout: float) -> None:
    sock.settimeout(timeout)
    while sock.recv(1 << 20):
        pass


def test_client_that_never_reads_is_disconnected_and_memory_stays_bounded(server_factory: ServerFactory) -> None:
    server = server_factory(
        env={"PGACTIVITY_CLIENT_BUFFER_BYTES": str(1024 * 1024), "PGACTIVITY_CLIENT_BUFFER_EVENTS": "100000"}
    )
    assert server.proc is not None
    pid = server.proc.pid
    org = "org-flood"
    count, size, per_transaction = 2000, 50_000, 20
    reader = SSEClient(f"{server.base_url}{STREAM}", server.token(org), reconnect=True).start()
    stalled = _never_reading_client(server, org)
    try:
        reader.wait_for(lambda c: len(c.events) == 1)
        wait_until(lambda: server.log().count("stream opened") >= 2, what="both streams open")
        with PeakRss(pid) as rss:
            # ~100 MB in bursts of 20 events (1 MB) per commit.
            for _ in range(count // per_transaction):
                write_batch_in_one_transaction(server.db_url, org, per_transaction, payload_bytes=size)
            final = last_seq(server.db_url, org)
            assert final == count
            reader.wait_for(lambda c: c.last_event_id == str(final), timeout=60)
            wait_until(lambda: "client too slow" in server.log(), timeout=30, what="the slow client to be dropped")
        # The server ended the stalled client's stream: once it reads what the kernel and the
        # server already hold, it finds the end of the chunked response (and would reconnect).
        tail = _drain_until_stream_end(stalled, timeout=30)
    finally:
        reader.stop()
        stalled.close()
    total_kb = count * size // 1024
    growth = rss.growth_kb
    assert growth < total_kb // 4, f"RSS grew by {growth} kB while {total_kb} kB flowed (baseline {rss.baseline} kB)"
    assert tail.endswith(b"\r\n0\r\n\r\n"), f"the stalled stream was not ended by the server: {tail!r}"
    assert b'data: {"type": "end", "reason": "slow_client"}\n\n' in tail, tail  # and it said why
    assert_exactly(reader.seqs(), 1, final)
    # (The reader normally keeps up and is never dropped; on a loaded machine it may fall a
    # megabyte behind and be dropped too: it then resumes with Last-Event-ID, losing nothing.)


def test_client_that_stops_reading_altogether_is_cut_off_after_the_send_timeout(server_factory: ServerFactory) -> None:
    """A client whose socket stays open but is never read again (a frozen process, a peer gone
    without a FIN) must not hold its stream, task and buffers for ever: the server's write to it
    can never finish, and ASGI cannot abort it. TCP_USER_TIMEOUT makes the kernel abort it."""
    server = server_factory(
        env={
            "PGACTIVITY_CLIENT_SEND_TIMEOUT_SECONDS": "2",
            # Buffers far above what flows: neither client is dropped as slow, so the only
            # stream that can end is the frozen one, ended by the timeout.
            "PGACTIVITY_CLIENT_BUFFER_BYTES": str(64 * 1024 * 1024),
            "PGACTIVITY_CLIENT_BUFFER_EVENTS": "100000",
        }
    )
    org = "org-frozen"
    reader = SSEClient(f"{server.base_url}{STREAM}", server.token(org), reconnect=True).start()
    stalled = _never_reading_client(server, org)
    try:
        reader.wait_for(lambda c: len(c.events) == 1)
        wait_until(lambda: server.log().count("stream opened") >= 2, what="both streams open")
        # ~10 MB: more than the kernel's socket buffers and the server's pending write can hold.
        for _ in range(10):
            write_batch_in_one_transaction(server.db_url, org, 20, payload_bytes=50_000)
        final = last_seq(server.db_url, org)
        # Only the frozen client's stream ends, and without it reading a byte.
        wait_until(lambda: "stream closed" in server.log(), timeout=30, what="the frozen client's stream to end")
        reader.wait_for(lambda c: c.last_event_id == str(final), timeout=60)
        assert server.log().count("stream closed") == 1
        # The connection was aborted, not ended: the client finds a reset once it reads again.
        with pytest.raises(ConnectionResetError):
            _read_to_the_end(stalled, timeout=30)
    finally:
        reader.stop()
        stalled.close()
    assert_exactly(reader.seqs(), 1, final)


def test_concurrent_replays_of_large_events_keep_memory_bounded(server_factory: ServerFactory) -> None:
    """Regression: a replay page was 200 events whatever their size; eight clients resuming over
    50 kB events grew the server by ~450 MB."""
    server = server_factory()
    assert server.proc is not None
    org = "org-big-replay"
    for _ in range(50):
        write_batch_in_one_transaction(server.db_url, org, 20, payload_bytes=50_000)
    final = last_seq(server.db_url, org)
    assert final == 1000
    with PeakRss(server.proc.pid) as rss:
        clients = [
            SSEClient(f"{server.base_url}{STREAM}", server.token(org), last_event_id="0").start() for _ in range(8)
        ]
        try:
            for client in clients:
                client.wait_for(lambda c: c.last_event_id == str(final), timeout=90)
        finally:
            for client in clients:
                client.stop()
    for client in clients:
        assert client.snapshots() == []
        assert_exactly(client.seqs(), 1, final)
    streamed_kb = 8 * final * 50_000 // 1024
    growth = rss.growth_kb
    assert growth < 150 * 1024, f"RSS grew by {growth} kB while 8 clients replayed {streamed_kb} kB"


def test_a_burst_of_1mb_events_is_read_from_the_log_in_bounded_batches(server: ServerProcess) -> None:
    """Regression: a log-tail read was 200 events whatever their size; a burst of 1 MB events
    grew the server by more than the burst itself."""
    assert server.proc is not None
    org = "org-big-burst"
    # Reconnecting: on a busy machine it may fall 8 MB behind and be dropped as slow, then replay.
    client = SSEClient(f"{server.base_url}{STREAM}", server.token(org), reconnect=True).start()
    try:
        client.wait_for(lambda c: len(c.events) == 1)
        with PeakRss(server.proc.pid, interval=0.01) as rss:
            for _ in range(2):
                write_batch_in_one_transaction(server.db_url, org, 80, payload_bytes=1_000_000)
            client.wait_for(lambda c: c.last_event_id == "160", timeout=90)
    finally:
        client.stop()
    assert_exactly(client.seqs(), 1, 160)
    assert len(client.live()[-1].data["data"]["inputData"]["blob"]) == 1_000_000
    growth = rss.growth_kb
    assert growth < 80 * 1024, f"RSS grew by {growth} kB for a burst of 160 events of 1 MB"
