"""Several `serve` processes on one database: every client, on any process, gets
every event of its organization exactly once, in seq order, and nothing of
another organization; also when it moves from one process to the other with
Last-Event-ID, and when the process it is on is stopped with SIGTERM while
writers keep writing.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from pgactivity.embedded import free_port
from tests.e2e.conftest import ServerFactory, ServerProcess, make_token
from tests.e2e.sse import SSEClient
from tests.helpers import run_psql
from tests.unit.test_deploy_files import nginx_temp_paths

ORGS = ("org-one", "org-two")
BATCHES = 3  # writers pause between batches while the test moves clients around
PER_BATCH = 4  # activities per writer, organization and batch; 3 events each


@dataclass
class TrackedClient(SSEClient):
    """An SSE client that remembers which server each of its connections went to."""

    servers: list[str] = field(default_factory=list)

    def _once(self) -> None:
        self.servers.append(self.url)
        super()._once()


def psycopg_writer(url: str, org: str, n: int) -> None:
    """Plain INSERT/UPDATE through psycopg, one transaction each."""
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            row = conn.execute(
                "INSERT INTO agent_activities (organization_id, agent_type, agent_name) "
                "VALUES (%s, 'executor', %s) RETURNING id",
                (org, f"psycopg-{i}"),
            ).fetchone()
            assert row is not None
            conn.execute("UPDATE agent_activities SET progress = 50, message = 'half' WHERE id = %s", (row[0],))
            conn.execute("UPDATE agent_activities SET status = 'completed' WHERE id = %s", (row[0],))


def psql_writer(url: str, org: str, n: int) -> None:
    """The SQL API through plain psql, as an agent in another language would."""
    script = "".join(
        f"SELECT agent_activity_start(organization_id => '{org}', agent_type => 'planner', "
        f"agent_name => 'psql-{i}') AS id \\gset\n"
        "SELECT agent_activity_progress(id => :'id', message => 'thinking', progress => 30);\n"
        "SELECT agent_activity_complete(id => :'id');\n"
        for i in range(n)
    )
    run_psql(url, script)


def run_writers(url: str, gates: list[threading.Event], errors: list[BaseException]) -> threading.Thread:
    """Four concurrent writers (psycopg and psql, both organizations), batch by batch."""

    def one(write: Callable[[str, str, int], None], org: str) -> None:
        try:
            for batch in range(BATCHES):
                if batch:
                    assert gates[batch - 1].wait(60), "gate never opened"
                write(url, org, PER_BATCH)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=one, args=(write, org), daemon=True)
        for write in (psycopg_writer, psql_writer)
        for org in ORGS
    ]
    for t in threads:
        t.start()

    def join_all() -> None:
        for t in threads:
            t.join()

    joiner = threading.Thread(target=join_all, daemon=True)
    joiner.start()
    return joiner


def events_per_org(batches: int) -> int:
    return batches * PER_BATCH * 2 * 3  # two writers per organization, 3 events per activity


def log_of(url: str, org: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT seq, activity_id::text, type FROM agent_activity_events WHERE organization_id = %s ORDER BY seq",
            (org,),
        ).fetchall()
    return [(int(seq), str(aid), str(typ)) for seq, aid, typ in rows]


def assert_exactly_once(client: SSEClient, org: str, log: list[tuple[int, str, str]], who: str) -> None:
    snapshots = [e for e in client.events if e.type == "snapshot"]
    # One snapshot, on the first connection; every reconnection was an exact replay.
    assert len(snapshots) == 1, f"{who}: {len(snapshots)} snapshots"
    assert client.events[0].type == "snapshot"
    assert snapshots[0].data["reset"] is False
    live = client.live()
    assert {e.data["organizationId"] for e in live} == {org}, f"{who}: events of another organization"
    assert [(e.seq, e.data["activityId"], e.type) for e in live] == log, f"{who}: not the log, exactly once"
    assert [int(e.id or 0) for e in live] == [e.seq for e in live]


def stream_url(srv: ServerProcess) -> str:
    return f"{srv.base_url}/api/activity/stream"


def test_clients_on_two_processes_get_every_event_once_across_switches_and_sigterm(
    server_factory: ServerFactory,
) -> None:
    a = server_factory()
    b = server_factory()
    db = a.db_url
    clients: dict[str, tuple[str, TrackedClient]] = {}
    for org in ORGS:
        for name, srv in (("a", a), ("b", b)):
            clients[f"{org}@{name}"] = (org, TrackedClient(stream_url(srv), make_token(org), reconnect=True))
    # Moves from a to b by itself mid-stream, then is on b when b is stopped.
    mover = TrackedClient(stream_url(a), make_token(ORGS[0]), reconnect=True)
    clients["mover"] = (ORGS[0], mover)
    for _, c in clients.values():
        c.start()
    gates = [threading.Event() for _ in range(BATCHES - 1)]
    errors: list[BaseException] = []
    try:
        for _, c in clients.values():
            c.wait_connected(30)
            c.wait_for(lambda c: len(c.events) >= 1, timeout=30)  # the (empty) snapshot

        writers = run_writers(db, gates, errors)

        # 1. The mover leaves a for b in the middle of the stream.
        mover.wait_for(lambda c: len(c.live()) >= 3, timeout=60)
        mover.url = stream_url(b)
        mover.drop()
        moved_at = int(mover.last_event_id or 0)
        mover.wait_for(lambda c: c.connections >= 2 and c.servers[-1] == stream_url(b), timeout=60)
        gates[0].set()  # more writes once it has moved

        # 2. Stop b with SIGTERM while the last batch is written; its clients come back on a.
        some_of_batch_two = events_per_org(1) + 6
        for key, (_, c) in clients.items():
            c.wait_for(lambda c: len(c.live()) >= some_of_batch_two, timeout=60)
            if key.endswith("@b") or c is mover:
                c.url = stream_url(a)  # what a load balancer does once b is gone
        assert b.proc is not None
        b.proc.send_signal(signal.SIGTERM)
        gates[1].set()
        assert b.proc.wait(30) == 0, b.log()

        writers.join(120)
        assert not writers.is_alive(), "writers did not finish"
        assert not errors, errors

        total = events_per_org(BATCHES)
        logs = {org: log_of(db, org) for org in ORGS}
        for org in ORGS:
            assert [seq for seq, _, _ in logs[org]] == list(range(1, total + 1))
        for _, c in clients.values():
            c.wait_for(lambda c: len(c.live()) >= total, timeout=60)
    finally:
        for g in gates:
            g.set()
        for _, c in clients.values():
            c.stop()

    for key, (org, c) in clients.items():
        assert c.error is None, f"{key}: {c.error!r}"
        assert_exactly_once(c, org, logs[org], key)

    # The mover really did go a -> b -> a, resuming mid-stream each time.
    distinct = [u for i, u in enumerate(mover.servers) if i == 0 or u != mover.servers[i - 1]]
    assert distinct[:3] == [stream_url(a), stream_url(b), stream_url(a)], mover.servers
    assert 0 < moved_at < total
    # Clients of b were ended by the SIGTERM and resumed on a.
    for org in ORGS:
        on_b = clients[f"{org}@b"][1]
        assert on_b.servers[0] == stream_url(b)
        assert on_b.servers[-1] == stream_url(a)


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def nginx_conf_for_test(tmp_path: Path, upstreams: list[ServerProcess], port: int) -> Path:
    """deploy/nginx.conf with local upstreams, port, pid, log and temp files; nothing else changed."""
    conf = (Path(__file__).parents[2] / "deploy" / "nginx.conf").read_text()
    servers = "\n".join(f"        server 127.0.0.1:{s.port} max_fails=1 fail_timeout=5s;" for s in upstreams)
    replacements = {
        "        server pgactivity:8000 max_fails=1 fail_timeout=5s;": servers,
        "listen 8080;": f"listen 127.0.0.1:{port};",
        "pid /tmp/nginx.pid;": f"pid {tmp_path}/nginx.pid;",
        "access_log /dev/stdout pgactivity;": f"access_log {tmp_path}/access.log pgactivity;",
        "error_log /dev/stderr warn;": f"error_log {tmp_path}/error.log warn;",
    }
    for old, new in replacements.items():
        assert old in conf, f"deploy/nginx.conf changed: update this test ({old!r})"
        conf = conf.replace(old, new)
    conf = conf.replace("http {\n", "http {\n" + nginx_temp_paths(tmp_path), 1)
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    return path


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_sse_through_deploy_nginx_conf_is_unbuffered_fails_over_and_logs_no_token(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """deploy/nginx.conf in front of two processes: each event passes the proxy on
    its own, streams resume on the other process when one stops, and the access
    log never holds the ?access_token= of a browser's EventSource."""
    a = server_factory()
    b = server_factory()
    port = free_port()
    conf = nginx_conf_for_test(tmp_path, [a, b], port)
    proc = subprocess.Popen(
        [str(NGINX), "-e", "stderr", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    org = ORGS[0]
    token = make_token(org)
    clients = [SSEClient(f"{base}/api/activity/stream", token, reconnect=True) for _ in range(4)]
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.1)
        # A browser's EventSource: the token in the query string.
        with (
            httpx.Client(timeout=10) as http,
            http.stream("GET", f"{base}/api/activity/stream", params={"access_token": token}) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
        for c in clients:  # round-robin: both processes hold some
            c.start().wait_for(lambda c: len(c.events) >= 1, timeout=30)
        # One event at a time: each reaches every client before the next is written.
        for i in range(3):
            run_psql(a.db_url, f"SELECT agent_activity_start(organization_id => '{org}', agent_type => 'x{i}');")
            for c in clients:
                c.wait_for(lambda c, n=i + 1: len(c.live()) >= n, timeout=30)
        a.stop()  # its streams end; nginx sends their reconnections to b
        for i in range(3, 6):
            run_psql(a.db_url, f"SELECT agent_activity_start(organization_id => '{org}', agent_type => 'x{i}');")
        for c in clients:
            c.wait_for(lambda c: len(c.live()) >= 6, timeout=60)
    finally:
        for c in clients:
            c.stop()
        proc.terminate()
        proc.wait(15)
    for c in clients:
        assert c.seqs() == [1, 2, 3, 4, 5, 6]
    log = (tmp_path / "access.log").read_text()
    assert "GET /api/activity/stream HTTP/1.1" in log
    assert token not in log
    assert "access_token" not in log


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_same_origin_cookie_websocket_through_deploy_nginx_conf_on_any_port(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A page served through deploy/nginx.conf on a port other than 80/443 opens the WebSocket with its
    cookie: nginx used to send `Host` without the port, so the server took the page's Origin for a
    foreign one and closed with 4403."""
    srv = server_factory()
    port = free_port()
    conf = nginx_conf_for_test(tmp_path, [srv], port)
    proc = subprocess.Popen(
        [str(NGINX), "-e", "stderr", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"127.0.0.1:{port}"
    cookie = {"Cookie": f"pgactivity_token={make_token('org-one')}"}
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.1)
        run_psql(srv.db_url, "SELECT agent_activity_start(organization_id => 'org-one', agent_type => 'x');")
        with ws_connect(f"ws://{base}/api/activity/ws", open_timeout=10, additional_headers=cookie,
                        origin=f"http://{base}") as ws:  # fmt: skip
            first = json.loads(ws.recv(timeout=15))
        assert first["type"] == "snapshot", first
        assert [a["agentType"] for a in first["activities"]] == ["x"]
        # Another origin (another port of the same host is another origin) still cannot use the cookie.
        for foreign in (f"http://127.0.0.1:{free_port()}", "http://evil.example", "null"):
            with ws_connect(
                f"ws://{base}/api/activity/ws", open_timeout=10, additional_headers=cookie, origin=foreign
            ) as ws:
                refused = json.loads(ws.recv(timeout=15))
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=15)
            assert refused["error"]["code"] == "forbidden", foreign
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4403, foreign
    finally:
        proc.terminate()
        proc.wait(15)
