"""Rows no writer may poison: the database refuses timestamps nothing can read, and JSON of any depth
PostgreSQL accepts breaks neither the server (stream, search) nor `pgactivity tail`."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.e2e.conftest import ServerProcess
from tests.e2e.test_tail import TailProcess, run_tail  # noqa: F401 (the fixture)
from tests.helpers import ALLOW_OUT_OF_RANGE_TIMESTAMPS, run_psql

STREAM = "/api/activity/stream"
DEPTH = 3000  # Python's json.loads gives up at about 1000; PostgreSQL takes about 10000 by default


def deep(depth: int = DEPTH) -> str:
    return "[" * depth + '"bottom"' + "]" * depth


def test_timestamps_nothing_can_read_are_refused_and_search_stays_up(server: ServerProcess) -> None:
    """`created_at = 'infinity'` (or year 10001) in organization B was accepted, and every search of B
    then failed with a 500 (Python's datetime cannot hold it)."""
    for value in ("infinity", "10001-01-01", "-infinity"):
        result = run_psql(
            server.db_url,
            f"INSERT INTO agent_activities (organization_id, agent_type, created_at) VALUES ('org-b', 'x', '{value}');",
            check=False,
        )
        assert result.returncode != 0, value
        assert "agent_activities_created_at_range" in result.stderr, result.stderr
    run_psql(
        server.db_url,
        "SELECT agent_activity_complete(agent_activity_start(organization_id => 'org-b', agent_type => 'x'));",
    )
    result = run_psql(
        server.db_url,
        "UPDATE agent_activities SET completed_at = '10001-01-01' WHERE organization_id = 'org-b';",
        check=False,
    )
    assert "agent_activities_completed_at_range" in result.stderr
    response = httpx.get(f"{server.base_url}/api/activities", headers=server.auth("org-b"), timeout=10)
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 1


def read_stream_until(server: ServerProcess, org: str, needle: bytes, last_event_id: str = "0") -> bytes:
    """The raw SSE bytes (no JSON parsing in the client) until `needle` has arrived."""
    body = b""
    headers = {**server.auth(org), "Last-Event-ID": last_event_id}
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=30)) as http,
        http.stream("GET", f"{server.base_url}{STREAM}", headers=headers) as response,
    ):
        assert response.status_code == 200
        deadline = time.monotonic() + 30
        for chunk in response.iter_bytes():
            body += chunk
            if needle in body or time.monotonic() > deadline:
                break
    assert needle in body
    return body


def test_json_of_any_depth_breaks_neither_the_server_nor_tail(
    server: ServerProcess,
    run_tail: Callable[..., TailProcess],  # noqa: F811
) -> None:
    org = "org-deep"
    activity_id = run_psql(
        server.db_url,
        f"SELECT agent_activity_start(organization_id => '{org}', agent_type => 'deep', "
        f"input_data => '{deep()}', metadata => '{deep(9000)}');",
    ).stdout.strip()
    run_psql(server.db_url, f"SELECT agent_activity_complete(id => '{activity_id}', output_data => '{deep()}');")

    body = read_stream_until(server, org, b"id: 2\n")  # the replay carries both events whole
    assert body.count(b"[" * DEPTH) >= 2
    body = read_stream_until(server, org, b'"type": "snapshot"', last_event_id="")
    for path in (f"/api/activities/{activity_id}", "/api/activities", f"/api/activities/{activity_id}/events"):
        response = httpx.get(f"{server.base_url}{path}", headers=server.auth(org), timeout=10)
        assert response.status_code == 200, path
        assert response.text.count("[" * DEPTH) >= 1, path  # PostgreSQL's JSON, passed through whole

    tail = run_tail("--url", server.base_url, "--token", server.token(org), "--last-event-id", "0", "--count", "2")
    assert tail.wait_exit(30) == 0, "\n".join(tail.stderr)
    assert [line.split()[2] for line in tail.stdout] == ["started", "completed"]
    assert "\\u2026" in tail.stdout[1]  # the output, cut where it gets too deep ("…", as JSON prints it)
    assert not any("Traceback" in line for line in tail.stderr)
    assert "Traceback" not in server.log()


def test_a_deep_event_small_enough_to_ride_in_its_notify_arrives_live(server: ServerProcess) -> None:
    """3000 levels fit in a NOTIFY (about 6 KB); Python's parser cannot read them: the listener leaves the
    event to the log read instead of failing, and the client gets it live, whole."""
    org = "org-deep-live"
    body = b""
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=30)) as http,
        http.stream("GET", f"{server.base_url}{STREAM}", headers=server.auth(org)) as response,
    ):
        assert response.status_code == 200
        written = False
        deadline = time.monotonic() + 30
        for chunk in response.iter_bytes():
            body += chunk
            if not written and b'"type": "snapshot"' in body:
                written = True
                run_psql(
                    server.db_url,
                    f"SELECT agent_activity_start(organization_id => '{org}', agent_type => 'deep', "
                    f"input_data => '{deep()}');"
                    f"SELECT agent_activity_start(organization_id => '{org}', agent_type => 'after');",
                )
            if b"id: 2\n" in body or time.monotonic() > deadline:
                break
    live = body.split(b'"type": "snapshot"', 1)[1]
    assert b"id: 1\n" in live
    assert b"id: 2\n" in live
    assert live.count(b"[" * DEPTH) == 1
    assert "Traceback" not in server.log()


def test_rows_from_before_the_timestamp_limits_do_not_break_search(server: ServerProcess) -> None:
    """The timestamp limits leave rows written before them in place; search skips
    nothing it can show and never fails on them."""
    run_psql(
        server.db_url,
        ALLOW_OUT_OF_RANGE_TIMESTAMPS + "INSERT INTO agent_activities (organization_id, agent_type, created_at) VALUES"
        " ('org-old', 'future', 'infinity'), ('org-old', 'far', '10001-01-01'), ('org-old', 'past', '-infinity');"
        "SELECT agent_activity_start(organization_id => 'org-old', agent_type => 'normal');",
    )
    headers = server.auth("org-old")
    first = httpx.get(f"{server.base_url}/api/activities", params={"limit": "2"}, headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    assert [a["agentType"] for a in first.json()["items"]] == ["future", "far"]
    rest = httpx.get(
        f"{server.base_url}/api/activities",
        params={"limit": "10", "cursor": first.json()["nextCursor"]},
        headers=headers,
        timeout=10,
    )
    assert rest.status_code == 200, rest.text
    assert [a["agentType"] for a in rest.json()["items"]] == ["normal", "past"]
