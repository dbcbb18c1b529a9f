"""The stream's contract, end to end: auth, snapshot, live events from psql, headers."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import ServerProcess
from tests.e2e.sse import SSEClient
from tests.helpers import run_psql


def test_snapshot_then_live_event_written_by_psql(server: ServerProcess) -> None:
    run_psql(server.db_url, "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'planner');")
    client = SSEClient(f"{server.base_url}/api/activity/stream", server.token("org-a")).start()
    try:
        client.wait_for(lambda c: len(c.events) >= 1)
        snapshot = client.events[0]
        assert snapshot.type == "snapshot"
        assert snapshot.id == "1"
        assert [a["agentType"] for a in snapshot.data["activities"]] == ["planner"]

        run_psql(
            server.db_url,
            "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor', "
            "agent_name => 'executor-high', session_id => 'ses-1', category => 'ultrabrain', "
            """input_data => '{"prompt": "x"}');""",
        )
        client.wait_for(lambda c: len(c.live()) >= 1)
        event = client.live()[0]
        assert event.id == "2"
        assert event.data["type"] == "agent_started"
        assert event.data["agentName"] == "executor-high"
        assert event.data["data"] == {"inputData": {"prompt": "x"}, "metadata": None}
    finally:
        client.stop()


def test_stream_headers(server: ServerProcess) -> None:
    with (
        httpx.Client(timeout=5) as http,
        http.stream("GET", f"{server.base_url}/api/activity/stream", headers=server.auth("org-a")) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"


def test_missing_token_is_401_json(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}/api/activity/stream", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
