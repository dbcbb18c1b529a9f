"""GET /metrics of the real server: the values move as clients come and go and events flow."""

from __future__ import annotations

import socket

import psycopg

from tests.e2e.conftest import ServerFactory, ServerProcess
from tests.e2e.prom import scrape, value, wait_metrics
from tests.e2e.sse import SSEClient
from tests.helpers import run_psql


def stream(server: ServerProcess, org: str, last_event_id: str | None = None) -> SSEClient:
    client = SSEClient(f"{server.base_url}/api/activity/stream", server.token(org), last_event_id=last_event_id)
    client.start()
    client.wait_for(lambda c: len(c.events) >= 1)
    return client


def test_metrics_follow_clients_events_replays_and_the_listener(server: ServerProcess) -> None:
    first = scrape(server)
    assert value(first, "pgactivity_events_delivered_total") == 0
    assert not any(name == "pgactivity_connected_clients" for name, _ in first)
    assert value(first, "pgactivity_listener_connected") == 1
    assert value(first, "pgactivity_event_lag_seconds_count") == 0

    clients = [stream(server, "org-a"), stream(server, "org-a"), stream(server, "org-b")]
    try:
        samples = wait_metrics(
            server,
            lambda s: (
                value(s, "pgactivity_connected_clients", organization="org-a") == 2
                and value(s, "pgactivity_connected_clients", organization="org-b") == 1
            ),
        )
        assert value(samples, "pgactivity_stream_snapshots_total", reset="false") == 3

        run_psql(
            server.db_url,
            "SELECT agent_activity_start('org-a', 'executor'); SELECT agent_activity_start('org-a', 'planner');"
            "SELECT agent_activity_start('org-a', 'reviewer');",
        )
        for client in clients[:2]:
            client.wait_for(lambda c: len(c.live()) >= 3)
        samples = wait_metrics(server, lambda s: value(s, "pgactivity_events_delivered_total") == 6)
        assert value(samples, "pgactivity_event_lag_seconds_count") == 3
        assert (value(samples, "pgactivity_event_lag_seconds_sum") or 0) >= 0
        assert value(samples, "pgactivity_event_lag_seconds_bucket", le="+Inf") == 3
        assert clients[2].live() == []

        # A resume replays from the log; an unknown Last-Event-ID gets a reset snapshot.
        resumed = stream(server, "org-a", last_event_id="1")
        resumed.wait_for(lambda c: len(c.live()) >= 2)
        reset = stream(server, "org-a", last_event_id="999")
        clients += [resumed, reset]
        samples = wait_metrics(server, lambda s: value(s, "pgactivity_stream_replays_total") == 1)
        assert value(samples, "pgactivity_stream_replayed_events_total") == 2
        assert value(samples, "pgactivity_stream_snapshots_total", reset="true") == 1
        assert value(samples, "pgactivity_connected_clients", organization="org-a") == 4
    finally:
        for client in clients:
            client.stop()
    wait_metrics(server, lambda s: not any(name == "pgactivity_connected_clients" for name, _ in s))

    # The listener's connection is killed: the reconnect is counted.
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            ("pgactivity-listener",),
        ).fetchone()
    assert killed == (1,)
    wait_metrics(
        server,
        lambda s: (
            (value(s, "pgactivity_listener_reconnects_total") or 0) >= 1
            and value(s, "pgactivity_listener_connected") == 1
        ),
    )


def never_reading_stream(server: ServerProcess, org: str) -> socket.socket:
    """A client that opens the stream and never reads it (a tiny receive window)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    request = (
        f"GET /api/activity/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token(org)}\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


def test_slow_client_disconnect_is_counted(server_factory: ServerFactory) -> None:
    server = server_factory(env={"PGACTIVITY_CLIENT_BUFFER_BYTES": "1024", "PGACTIVITY_CLIENT_BUFFER_EVENTS": "1"})
    stalled = never_reading_stream(server, "org-s")
    try:
        wait_metrics(server, lambda s: value(s, "pgactivity_connected_clients", organization="org-s") == 1)
        assert value(scrape(server), "pgactivity_slow_client_disconnects_total") == 0
        # 100 kB events, one per transaction, until the kernel's buffers and then the client's are full.
        big = "x" * 100_000
        for _ in range(50):
            run_psql(
                server.db_url,
                "".join(
                    f"SELECT agent_activity_start('org-s', 'burst', input_data => '{{\"blob\": \"{big}\"}}');\n"
                    for _ in range(10)
                ),
            )
            if value(scrape(server), "pgactivity_slow_client_disconnects_total") == 1:
                break
        samples = wait_metrics(server, lambda s: value(s, "pgactivity_slow_client_disconnects_total") == 1)
        assert value(samples, "pgactivity_connected_clients", organization="org-s") is None
    finally:
        stalled.close()
