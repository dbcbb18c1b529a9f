"""The server's logs: structured (json or text), and never a token or a payload body."""

from __future__ import annotations

import json

import httpx

from tests.e2e.conftest import ServerFactory
from tests.e2e.sse import Received, SSEClient
from tests.helpers import run_psql

SECRET = "s3cr3t-payload-do-not-log"


class QueryTokenSSE(SSEClient):
    """The test SSE client, minus the Authorization header."""

    def __init__(self, url: str) -> None:
        super().__init__(url, token="")

    def _once(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=30)) as http,
            http.stream("GET", self.url) as response,
        ):
            self._response = response
            self.status_codes.append(response.status_code)
            self.connections += 1
            self._connected.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(Received(None, json.loads(line[6:])))


def test_logs_carry_no_token_and_no_payload(server_factory: ServerFactory) -> None:
    server = server_factory(env={"PGACTIVITY_LOG_FORMAT": "json", "PGACTIVITY_LOG_LEVEL": "DEBUG"})
    token = server.token("org-log")
    forged = token[:-6] + "AAAAAA"  # a token whose signature is wrong
    activity_id = run_psql(
        server.db_url,
        f"""SELECT agent_activity_start(organization_id => 'org-log', agent_type => 'executor',
                input_data => '{{"prompt": "{SECRET}-input"}}', metadata => '{{"k": "{SECRET}-meta"}}')""",
    ).stdout.strip()

    # An EventSource-like client: the token only in the query string.
    client = QueryTokenSSE(f"{server.base_url}/api/activity/stream?access_token={token}").start()
    try:
        client.wait_for(lambda c: len(c.events) >= 1)
        run_psql(
            server.db_url,
            f"""SELECT agent_activity_progress('{activity_id}', '{SECRET}-message', 50);
                SELECT agent_activity_fail('{activity_id}', '{SECRET}-error');""",
        )
        client.wait_for(lambda c: len(c.live()) >= 2)
        assert SECRET in json.dumps([e.data for e in client.events])  # the stream does carry it
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            for path in (
                "/api/activities",
                f"/api/activities/{activity_id}",
                f"/api/activities/{activity_id}/events",
                "/api/activities?q=" + SECRET,
                "/api/activities?since=not-a-date",
                "/metrics",
            ):
                response = http.get(path, params={"access_token": token})
                assert response.status_code in (200, 400), path
            for bad in (forged, token + "x", "not-a-jwt"):
                assert http.get("/api/activities", params={"access_token": bad}).status_code == 401
                assert http.get("/api/activities", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
            with http.stream("GET", "/api/activity/stream", params={"access_token": forged}) as response:
                assert response.status_code == 401
    finally:
        client.stop()
    server.stop()

    log = server.log()
    lines = [line for line in log.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [r["message"] for r in records]
    assert "stream opened" in messages
    assert "stream closed" in messages
    opened = next(r for r in records if r["message"] == "stream opened")
    assert opened["organization_id"] == "org-log"
    assert opened["level"] == "INFO"
    assert any(r.get("listener_state") == "connected" for r in records)

    assert token not in log
    assert token.split(".")[2] not in log  # not even the signature
    assert forged not in log
    assert SECRET not in log
