"""GET /api/activity/ws against the real server: the SSE stream's events, message for message."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.conftest import SECRET, ServerProcess, make_token
from tests.e2e.sse import SSEClient
from tests.helpers import run_psql

HEARTBEAT = {"type": "heartbeat"}


def ws_url(server: ServerProcess, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"ws://127.0.0.1:{server.port}/api/activity/ws" + (f"?{query}" if query else "")


@contextmanager
def open_ws(url: str, **kwargs: Any) -> Iterator[ClientConnection]:
    with connect(url, open_timeout=10, **kwargs) as ws:
        yield ws


def next_event(ws: ClientConnection, timeout: float = 15) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message != HEARTBEAT:
            return dict(message)


def close_code(ws: ClientConnection, timeout: float = 10) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes the socket, and the close code."""
    messages: list[dict[str, Any]] = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=timeout)))
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code if closed.rcvd is not None else None


def test_ws_gets_the_same_events_as_sse(server: ServerProcess) -> None:
    run_psql(server.db_url, "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'planner');")
    sse = SSEClient(f"{server.base_url}/api/activity/stream", server.token("org-a")).start()
    try:
        with open_ws(ws_url(server, access_token=server.token("org-a"))) as ws:
            ws_snapshot = next_event(ws)
            sse.wait_for(lambda c: len(c.events) >= 1)
            assert ws_snapshot["type"] == "snapshot"
            assert ws_snapshot == sse.events[0].data
            assert [a["agentType"] for a in ws_snapshot["activities"]] == ["planner"]

            run_psql(
                server.db_url,
                """
                SELECT agent_activity_start(organization_id => 'org-b', agent_type => 'intruder');
                SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor',
                       agent_name => 'exec-1', session_id => 'ses-1', input_data => '{"prompt": "x"}');
                SELECT agent_activity_progress(id, message => 'step 1', progress => 40)
                  FROM agent_activities WHERE agent_name = 'exec-1';
                SELECT agent_activity_complete(id, output_data => '{"ok": true}')
                  FROM agent_activities WHERE agent_name = 'exec-1';
                SELECT agent_activity_fail(agent_activity_start(organization_id => 'org-a', agent_type => 'researcher'),
                       error => 'boom');
                """,
            )
            received = [next_event(ws) for _ in range(5)]
            sse.wait_for(lambda c: len(c.live()) >= 5)
        assert [e["seq"] for e in received] == [2, 3, 4, 5, 6]
        assert [e["type"] for e in received] == [
            "agent_started",
            "agent_progress",
            "agent_completed",
            "agent_started",
            "agent_failed",
        ]
        assert received == [e.data for e in sse.live()[:5]]
        assert all(e["organizationId"] == "org-a" for e in received)
    finally:
        sse.stop()


def test_ws_resumes_exactly_with_last_event_id_and_sends_heartbeats(server: ServerProcess) -> None:
    run_psql(
        server.db_url,
        "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor');"
        + "".join(f"SELECT agent_activity_progress(id, progress => {p}) FROM agent_activities;" for p in (10, 20, 30)),
    )  # seqs 1..4
    token = server.token("org-a")
    with open_ws(ws_url(server, access_token=token, lastEventId="2")) as ws:
        assert [next_event(ws)["seq"] for _ in range(2)] == [3, 4]  # no snapshot: a replay
        run_psql(server.db_url, "SELECT agent_activity_complete(id) FROM agent_activities;")
        live = next_event(ws)
        assert (live["seq"], live["type"]) == (5, "agent_completed")
        # PGACTIVITY_HEARTBEAT_SECONDS=1 in the test server: a heartbeat message arrives soon.
        deadline = time.monotonic() + 10
        while json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))) != HEARTBEAT:
            pass

    with open_ws(ws_url(server, access_token=token, lastEventId="999")) as ws:
        snapshot = next_event(ws)
        assert (snapshot["type"], snapshot["reset"], snapshot["seq"]) == ("snapshot", True, 5)

    with open_ws(ws_url(server, access_token=token, agentType="nobody")) as ws:
        assert next_event(ws)["activities"] == []  # filters apply as on the SSE stream

    for bad in ("abc", "%C2%B2", "%D9%A3", "-1"):  # `²` and `٣` are digits, but not ASCII
        with open_ws(ws_url(server, access_token=token, lastEventId=bad)) as ws:
            messages, code = close_code(ws)
            assert code == 4400, bad
            assert messages[0]["error"]["code"] == "bad_request"

    with open_ws(ws_url(server, access_token=token)) as ws:
        next_event(ws)
        server.stop()  # a shutdown ends the stream with 1012: reconnect with ?lastEventId=
        _, code = close_code(ws)
        assert code == 1012


def test_ws_refuses_bad_tokens_with_4401_and_a_json_error(server: ServerProcess) -> None:
    bad_tokens = {
        "missing": None,
        "malformed": "not-a-jwt",
        "expired": make_token("org-a", ttl=-60),
        "wrong secret": make_token("org-a", secret=SECRET + "-other"),
        "no organization": make_token(None),
    }
    for case, token in bad_tokens.items():
        with open_ws(ws_url(server, access_token=token) if token is not None else ws_url(server)) as ws:
            messages, code = close_code(ws)
        assert code == 4401, case
        assert len(messages) == 1, case
        assert messages[0]["type"] == "error", case
        assert messages[0]["error"]["code"] == "unauthorized", case


def test_ws_header_and_cookie_auth_and_org_isolation(server: ServerProcess) -> None:
    run_psql(
        server.db_url,
        "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'a-agent');"
        "SELECT agent_activity_start(organization_id => 'org-b', agent_type => 'b-agent');",
    )
    with open_ws(ws_url(server), additional_headers=server.auth("org-b")) as ws:
        snapshot = next_event(ws)
        assert snapshot["organizationId"] == "org-b"
        assert [a["agentType"] for a in snapshot["activities"]] == ["b-agent"]
        run_psql(
            server.db_url,
            "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'a-agent-2');"
            "SELECT agent_activity_start(organization_id => 'org-b', agent_type => 'b-agent-2');",
        )
        event = next_event(ws)
        assert (event["organizationId"], event["agentType"]) == ("org-b", "b-agent-2")

    cookie = {"Cookie": f"pgactivity_token={server.token('org-a')}"}
    with open_ws(ws_url(server), additional_headers=cookie) as ws:
        assert next_event(ws)["organizationId"] == "org-a"
    with open_ws(ws_url(server), additional_headers=cookie, origin=server.base_url) as ws:
        assert next_event(ws)["organizationId"] == "org-a"
    # A page on another site cannot ride on the cookie (WebSockets have no CORS).
    with open_ws(ws_url(server), additional_headers=cookie, origin="http://evil.example") as ws:
        messages, code = close_code(ws)
    assert code == 4403
    assert messages[0]["error"]["code"] == "forbidden"
