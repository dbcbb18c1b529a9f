"""The process around the stream: SIGTERM with open streams, two processes, heartbeats,
health, the token command, the JWT-key guard and the embedded PostgreSQL."""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from pgactivity.embedded import free_port
from tests.e2e.conftest import SECRET, ServerFactory, ServerProcess, pgactivity_command
from tests.e2e.sse import SSEClient
from tests.e2e.writers import Writer, assert_exactly, last_seq, wait_until
from tests.helpers import run_psql

STREAM = "/api/activity/stream"


def test_sigterm_with_50_open_streams_exits_within_5s_and_a_client_resumes_on_the_other_process(
    server_factory: ServerFactory,
) -> None:
    first = server_factory()
    second = server_factory()
    org = "org-term"
    streams = [SSEClient(f"{first.base_url}{STREAM}", first.token(f"org-{n % 7}")).start() for n in range(50)]
    mover = SSEClient(f"{first.base_url}{STREAM}", first.token(org)).start()
    writer = Writer(first.db_url, org, threads=2, pause=0.01)
    resumed: SSEClient | None = None
    try:
        for client in [*streams, mover]:
            client.wait_for(lambda c: len(c.events) >= 1, timeout=30)
        wait_until(lambda: first.log().count("stream opened") >= 51, what="51 streams open")
        writer.start()
        mover.wait_for(lambda c: len(c.live()) >= 30, timeout=30)

        seconds = first.stop(signal.SIGTERM, timeout=15)
        assert first.proc is not None
        assert seconds < 5, f"serve took {seconds:.1f}s to exit after SIGTERM with 51 open streams"
        assert first.proc.returncode == 0, first.log()
        # Every stream was ended by the server (a clean end of the response, not an error), saying why.
        for client in [*streams, mover]:
            wait_until(lambda c=client: not c.running, timeout=10, what="the stream to end")  # type: ignore[misc]
            assert client.error is None, repr(client.error)
            assert client.ends == ["shutdown"]

        # The client moves to the other process with its Last-Event-ID while the writer goes on.
        assert mover.last_event_id is not None
        resumed = SSEClient(f"{second.base_url}{STREAM}", second.token(org), last_event_id=mover.last_event_id).start()
        resumed.wait_for(lambda c: len(c.live()) >= 20, timeout=30)
        writer.stop()
        final = last_seq(second.db_url, org)
        resumed.wait_for(lambda c: c.last_event_id == str(final), timeout=30)
    finally:
        writer.stop()
        for client in streams:
            client.stop()
        mover.stop()
        if resumed is not None:
            resumed.stop()
    assert resumed.snapshots() == [], "a resume with Last-Event-ID on the other process got a snapshot"
    assert_exactly(mover.seqs() + resumed.seqs(), 1, final)


def test_heartbeats_and_healthz(server: ServerProcess) -> None:
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).json() == {"status": "ok"}
    client = SSEClient(f"{server.base_url}{STREAM}", server.token("org-quiet")).start()
    try:
        client.wait_for(lambda c: len(c.events) == 1)
        started = time.monotonic()
        client.wait_for(lambda c: c.comments >= 4, timeout=20)
        elapsed = time.monotonic() - started
    finally:
        client.stop()
    # PGACTIVITY_HEARTBEAT_SECONDS=1: about one per second, on a quiet stream that has no events.
    assert client.live() == []
    assert elapsed > 2, f"4 heartbeats in {elapsed:.1f}s: more often than every second"
    gaps = [b - a for a, b in zip(client.comment_times, client.comment_times[1:], strict=False)]
    assert max(gaps) < 5, gaps


def test_token_command_mints_a_token_the_server_accepts(server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGACTIVITY_") and k != "DATABASE_URL"}
    out = subprocess.run(
        [*pgactivity_command(), "token", "--org", "org-cli", "--sub", "alice", "--ttl", "600"],
        env={**env, "PGACTIVITY_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = out.stdout.strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), out.stdout
    run_psql(server.db_url, "SELECT agent_activity_start(organization_id => 'org-cli', agent_type => 'cli');")
    client = SSEClient(f"{server.base_url}{STREAM}", token).start()
    try:
        client.wait_for(lambda c: len(c.events) >= 1)
    finally:
        client.stop()
    snapshot = client.events[0].data
    assert snapshot["organizationId"] == "org-cli"
    assert [a["agentType"] for a in snapshot["activities"]] == ["cli"]
    # Without the secret the command refuses, with a message rather than a traceback.
    refused = subprocess.run(
        [*pgactivity_command(), "token", "--org", "org-cli"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "PGACTIVITY_JWT_SECRET" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_serve_with_database_url_and_no_jwt_key_refuses_to_start(server_factory: ServerFactory) -> None:
    srv = server_factory(env={"PGACTIVITY_JWT_SECRET": ""}, start=False)
    srv.start(wait_ready=False)
    assert srv.proc is not None
    code = srv.proc.wait(60)
    log = srv.log()
    assert code != 0
    assert "JWT" in log
    assert "PGACTIVITY_JWT_SECRET" in log
    assert "Traceback" not in log
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", srv.port)) != 0, "nothing may listen after the refusal"


def test_serve_without_database_url_runs_an_embedded_postgres_prints_a_token_and_stops_it(
    server_factory: ServerFactory,
) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="pgactivity-serve-", dir="/tmp"))
    pg_port = free_port()
    srv = server_factory(
        env={
            "DATABASE_URL": "",
            "PGACTIVITY_JWT_SECRET": "",
            "PGACTIVITY_DATA_DIR": str(data_dir),
            "PGACTIVITY_EMBEDDED_PORT": str(pg_port),
        },
        start=False,
    )
    try:
        srv.start(wait_ready=False)
        srv.wait_ready(timeout=180)  # initdb on a busy machine
        log = srv.log()
        url_match = re.search(r"DATABASE_URL=(\S+)", log)
        token_match = re.search(r"token:\s+([\w-]+\.[\w-]+\.[\w-]+)", log)
        assert url_match, log
        assert token_match, log
        url = url_match.group(1)
        assert f":{pg_port}/" in url
        assert f"http://127.0.0.1:{srv.port}/" in log

        client = SSEClient(f"{srv.base_url}{STREAM}", token_match.group(1)).start()
        try:
            client.wait_for(lambda c: len(c.events) >= 1, timeout=30)
            run_psql(url, "SELECT agent_activity_start(organization_id => 'demo', agent_type => 'embedded');")
            client.wait_for(lambda c: len(c.live()) >= 1, timeout=30)
        finally:
            client.stop()
        assert client.events[0].data["organizationId"] == "demo"
        assert client.live()[0].data["agentType"] == "embedded"

        pid_file = data_dir / "postgres" / "postmaster.pid"
        assert pid_file.exists()
        seconds = srv.stop(signal.SIGTERM, timeout=60)
        assert srv.proc is not None
        assert srv.proc.returncode == 0, srv.log()
        assert seconds < 30
        # Its PostgreSQL is stopped with it.
        assert not pid_file.exists()
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", pg_port)) != 0

        # Regression: a SIGTERM (or Ctrl-C) while serve was still starting its PostgreSQL left that
        # PostgreSQL running, and every later serve reused it without ever stopping it.
        again = server_factory(env=srv.env, start=False)
        again.start(wait_ready=False)
        # Its PostgreSQL is starting (its pid file is there) and serve has not printed its banner yet.
        wait_until(lambda: pid_file.exists(), timeout=60, interval=0.005, what="PostgreSQL to start")
        assert "development server" not in again.log()
        again.stop(signal.SIGTERM, timeout=60)
        assert again.proc is not None
        assert again.proc.returncode == 128 + signal.SIGTERM, again.log()
        assert "stopped by SIGTERM while starting" in again.log()
        wait_until(lambda: not pid_file.exists(), timeout=30, what="the half-started PostgreSQL to be stopped")
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.stop(signal.SIGKILL)
        _stop_leftover_postgres(data_dir / "postgres")
        shutil.rmtree(data_dir, ignore_errors=True)


def _stop_leftover_postgres(data_dir: Path) -> None:
    """A failed run must not leave a PostgreSQL behind."""
    if not (data_dir / "postmaster.pid").exists():
        return
    from pgactivity.embedded import EmbeddedPostgres

    EmbeddedPostgres(data_dir).stop(mode="immediate")


def test_serve_runs_with_glibc_malloc_unless_pythonmalloc_is_set(server_factory: ServerFactory) -> None:
    """pymalloc's 1 MiB arenas, pinned by a few long-lived objects, kept the memory of 5000 departed
    streams; glibc's allocator gives it back page by page (memory.py)."""
    default = server_factory()
    chosen = server_factory(env={"PYTHONMALLOC": "pymalloc"})
    glibc = platform.libc_ver()[0] == "glibc"
    for server, expected in ((default, "malloc" if glibc else None), (chosen, "pymalloc")):
        assert server.proc is not None
        environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
        values = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"PYTHONMALLOC=")]
        assert values == ([expected] if expected else [])  # the same pid: re-executed, not forked


def test_serve_settles_the_garbage_collector_once_started(server_factory: ServerFactory) -> None:
    """A full collection walked every object start-up made, at every collection, and paused all
    streams for 60-180 ms with 1000 clients (memory.settle_gc); the serving process freezes them."""
    server = server_factory()
    deadline = time.monotonic() + 30
    settled = re.compile(r"garbage collector settled gc_frozen_objects=(\d+) gc_threshold0=(\d+)")
    while (found := settled.search(server.log())) is None:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert int(found.group(1)) > 10_000  # the modules, the app and its routes, the pools: about 80,000
    assert int(found.group(2)) == 10_000
