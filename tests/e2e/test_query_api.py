"""GET /api/activities, /api/activities/{id} and /{id}/events over real HTTP.

The expected answers are computed in Python from the rows themselves, not with
the server's SQL, so a wrong filter or a broken cursor shows up as a diff.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import ServerProcess
from tests.helpers import run_psql

ORG = "org-q"
OTHER = "org-other"
ROWS = 260

# 260 activities in ORG (created_at shared by groups of three, so the id breaks
# ties), 30 in OTHER; status, type, name, session and category vary
# independently; messages hold LIKE metacharacters and mixed case.
SEED = f"""
INSERT INTO agent_activities (organization_id, agent_type, agent_name, session_id, category, status,
                              message, created_at)
SELECT '{ORG}',
       (ARRAY['executor', 'planner', 'reviewer'])[1 + i % 3],
       CASE WHEN i % 11 = 0 THEN NULL ELSE 'agent-' || (i % 5) END,
       CASE WHEN i % 13 = 0 THEN NULL ELSE 'ses-' || (i % 4) END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE (ARRAY['ultrabrain', 'quick'])[1 + i % 2] END,
       (ARRAY['running', 'completed', 'failed'])[1 + (i / 3) % 3],
       CASE i % 6
           WHEN 0 THEN 'step ' || i || ': 100% done'
           WHEN 1 THEN 'step ' || i || ': 1000 done'
           WHEN 2 THEN 'step ' || i || ': under_score'
           WHEN 3 THEN 'step ' || i || ': Analyzing CODEBASE'
           WHEN 4 THEN NULL
           ELSE 'step ' || i || ': back\\slash'
       END,
       timestamptz '2026-01-01 00:00:00+00' + (i / 3) * interval '1 minute'
FROM generate_series(1, {ROWS}) AS i;

INSERT INTO agent_activities (organization_id, agent_type, agent_name, message, created_at)
SELECT '{OTHER}', 'executor', 'agent-1', 'Analyzing CODEBASE of the other org',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute'
FROM generate_series(1, 30) AS i;
"""

COLUMNS = ("id", "agent_type", "agent_name", "session_id", "category", "status", "message", "created_at")


def seed(db_url: str) -> list[dict[str, Any]]:
    run_psql(db_url, SEED)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM agent_activities WHERE organization_id = %s", (ORG,)
        ).fetchall()
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def newest_first(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["id"]) for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]


def walk(server: ServerProcess, org: str, params: dict[str, str], *, limit: int) -> list[dict[str, Any]]:
    """Every item of a search, page by page; checks that each page is full but the last."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(base_url=server.base_url, headers=server.auth(org), timeout=30) as http:
        for _ in range(1000):
            query = {**params, "limit": str(limit)} | ({"cursor": cursor} if cursor else {})
            response = http.get("/api/activities", params=query)
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {"items", "nextCursor"}
            items.extend(body["items"])
            cursor = body["nextCursor"]
            if cursor is None:
                return items
            assert len(body["items"]) == limit
    raise AssertionError("the cursor never ended")


@pytest.fixture
def seeded(server: ServerProcess) -> list[dict[str, Any]]:
    return seed(server.db_url)


def test_cursor_walks_every_row_exactly_once_in_order_despite_concurrent_inserts(
    server: ServerProcess, seeded: list[dict[str, Any]]
) -> None:
    expected = newest_first(seeded)
    seen: list[str] = []
    cursor: str | None = None
    with httpx.Client(base_url=server.base_url, headers=server.auth(ORG), timeout=30) as http:
        first = http.get("/api/activities").json()
        assert len(first["items"]) == 50  # the default limit
        for page in range(100):
            response = http.get("/api/activities", params={"limit": "7"} | ({"cursor": cursor} if cursor else {}))
            assert response.status_code == 200, response.text
            body = response.json()
            seen.extend(item["id"] for item in body["items"])
            if page == 3:
                # Newer rows arriving mid-walk land before the cursor: the walk neither repeats nor skips.
                run_psql(
                    server.db_url,
                    f"INSERT INTO agent_activities (organization_id, agent_type, created_at) "
                    f"SELECT '{ORG}', 'late-writer', timestamptz '2030-01-01' + i * interval '1 s' "
                    f"FROM generate_series(1, 5) AS i",
                )
            cursor = body["nextCursor"]
            if cursor is None:
                break
    assert len(seen) == ROWS
    assert seen == expected


def test_items_have_the_activity_shape(server: ServerProcess) -> None:
    run_psql(
        server.db_url,
        f"""SELECT agent_activity_start(organization_id => '{ORG}', agent_type => 'executor',
               agent_name => 'executor-high', session_id => 'ses-456', category => 'ultrabrain',
               input_data => '{{"prompt": "Implement feature X"}}', metadata => '{{"source": "slack"}}')""",
    )
    response = httpx.get(f"{server.base_url}/api/activities", headers=server.auth(ORG), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    (item,) = response.json()["items"]
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT agent_activity_json(a) FROM agent_activities AS a").fetchone()
    assert row is not None
    assert item == row[0]
    assert item["inputData"] == {"prompt": "Implement feature X"}
    assert response.json()["nextCursor"] is None


def _matches(row: dict[str, Any], name: str, value: str) -> bool:
    if name == "q":
        text = f"{row['agent_name'] or ''} {row['message'] or ''}"
        return value.lower() in text.lower()
    if name in ("since", "until"):
        bound = datetime.fromisoformat(value).astimezone(UTC)
        return bool(row["created_at"] >= bound) if name == "since" else bool(row["created_at"] < bound)
    column = {"agentType": "agent_type", "agentName": "agent_name", "sessionId": "session_id"}.get(name, name)
    return bool(row[column] == value)


FILTER_CASES = [
    {"status": "running"},
    {"status": "failed"},
    {"agentType": "planner"},
    {"agentName": "agent-3"},
    {"sessionId": "ses-2"},
    {"category": "quick"},
    {"since": "2026-01-01T00:30:00Z"},
    {"until": "2026-01-01T00:30:00Z"},
    {"since": "2026-01-01T02:10:00+02:00", "until": "2026-01-01T00:50:00.000001+00:00"},
    {"since": "2026-01-01T00:20:00"},  # no offset: UTC
    {"q": "codebase"},  # case-insensitive
    {"q": "0%"},  # % is literal: matches "100% done", not "1000 done"
    {"q": "r_s"},  # _ is literal: matches "under_score" only, not "ReviewerS"
    {"q": "back\\slash"},
    {"q": "agent-4"},  # in the name
    {"q": "nothing like this"},
    {"status": "completed", "agentType": "executor", "category": "ultrabrain", "q": "step"},
    {"sessionId": "ses-1", "agentName": "agent-2", "since": "2026-01-01T00:10:00Z", "until": "2026-01-01T01:10:00Z"},
]


def test_filters_return_exactly_the_matching_rows(server: ServerProcess, seeded: list[dict[str, Any]]) -> None:
    for params in FILTER_CASES:
        expected = newest_first([r for r in seeded if all(_matches(r, k, v) for k, v in params.items())])
        got = [item["id"] for item in walk(server, ORG, params, limit=40)]
        assert got == expected, params
    assert any(newest_first([r for r in seeded if _matches(r, "q", "0%")]))


def test_another_organization_sees_nothing_and_gets_plain_404s(
    server: ServerProcess, seeded: list[dict[str, Any]]
) -> None:
    other_items = walk(server, OTHER, {}, limit=200)
    assert len(other_items) == 30
    assert {item["organizationId"] for item in other_items} == {OTHER}
    assert walk(server, OTHER, {"q": "step"}, limit=200) == []

    victim = str(seeded[0]["id"])
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        assert http.get(f"/api/activities/{victim}", headers=server.auth(ORG)).status_code == 200
        assert http.get(f"/api/activities/{victim}/events", headers=server.auth(ORG)).status_code == 200
        missing = str(uuid.uuid4())
        for path in (f"/api/activities/{victim}", f"/api/activities/{victim}/events", f"/api/activities/{missing}"):
            response = http.get(path, headers=server.auth(OTHER))
            assert response.status_code == 404, path
            assert response.json() == {"error": {"code": "not_found", "message": "activity not found"}}
        # An organization's cursor cannot widen another's search either: it is only a position.
        page = http.get("/api/activities", headers=server.auth(ORG), params={"limit": "1"}).json()
        other = http.get("/api/activities", headers=server.auth(OTHER), params={"cursor": page["nextCursor"]}).json()
        assert {item["organizationId"] for item in other["items"]} <= {OTHER}


def test_detail_and_events_in_seq_order(server: ServerProcess) -> None:
    out = run_psql(
        server.db_url,
        f"""SELECT agent_activity_start(organization_id => '{ORG}', agent_type => 'executor',
                                        input_data => '{{"prompt": "p"}}');""",
    ).stdout.strip()
    activity_id = out
    run_psql(
        server.db_url,
        f"""SELECT agent_activity_start('{ORG}', 'noise');
            SELECT agent_activity_progress('{activity_id}', 'Analyzing codebase...', 30);
            SELECT agent_activity_progress('{activity_id}', 'Writing code', 60);
            SELECT agent_activity_complete('{activity_id}', '{{"filesChanged": ["a.py"]}}');""",
    )
    with httpx.Client(base_url=server.base_url, headers=server.auth(ORG), timeout=30) as http:
        detail = http.get(f"/api/activities/{activity_id}")
        assert detail.status_code == 200
        assert detail.json()["status"] == "completed"
        assert detail.json()["outputData"] == {"filesChanged": ["a.py"]}
        assert http.get(f"/api/activities/{activity_id.upper()}").json()["id"] == activity_id

        events = http.get(f"/api/activities/{activity_id}/events").json()
        assert [e["type"] for e in events["items"]] == [
            "agent_started",
            "agent_progress",
            "agent_progress",
            "agent_completed",
        ]
        assert [e["seq"] for e in events["items"]] == [1, 3, 4, 5]
        assert events["items"][1]["data"] == {"message": "Analyzing codebase...", "progress": 30}
        assert events["nextCursor"] is None

        paged: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            body = http.get(
                f"/api/activities/{activity_id}/events", params={"limit": "1"} | ({"cursor": cursor} if cursor else {})
            ).json()
            paged.extend(body["items"])
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert paged == events["items"]


BAD_SEARCHES: list[dict[str, str]] = [
    {"status": "bogus"},
    {"status": "running' OR '1'='1"},
    {"status": "running; DROP TABLE agent_activities; --"},
    {"since": "yesterday"},
    {"since": "2026-13-01T00:00:00Z"},
    {"until": "2026-01-01T25:00:00Z"},
    {"until": "'; DROP TABLE agent_activities; --"},
    {"since": "1" * 100},
    {"limit": "0"},
    {"limit": "-1"},
    {"limit": "201"},
    {"limit": "99999999999999999999999999"},
    {"limit": "abc"},
    {"limit": "1.5"},
    {"limit": "1e2"},
    {"limit": "٣"},  # a digit, but not ASCII
    {"cursor": "garbage"},
    {"cursor": "' OR 1=1 --"},
    {"cursor": "YTE6MTIzOm5vdC1hLXV1aWQ"},  # base64 of "a1:123:not-a-uuid"
    {"cursor": "ZTE6NQ"},  # an events cursor ("e1:5") on the search
    {"cursor": "YTE6OTk5OTk5OTk5OTk5OTk5OTk5OTk6MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA"},  # year out of range
    {"cursor": "x" * 5000},
    # base64 of "a1:5:" and 32 characters that int(x, 16) reads but that are not hex digits
    {"cursor": "YTE6NTowMDAwMDAwMDAwMDAwMDAwXzAwMDAwMDAwMDAwMDAwMA"},
    {"cursor": "YTE6LS01OjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw"},  # "a1:--5:<32 zeros>"
    {"limit": "²"},
    {"limit": " 5"},
    {"sessionId": ""},
    {"agentType": "x" * 201},
    {"q": ""},
    {"q": "nul\x00byte"},
    {"category": "\x00"},
]


def test_bad_input_is_400_json_never_500(server: ServerProcess, seeded: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=server.base_url, headers=server.auth(ORG), timeout=30) as http:
        for params in BAD_SEARCHES:
            response = http.get("/api/activities", params=params)
            assert response.status_code == 400, (params, response.status_code, response.text)
            error = response.json()["error"]
            assert error["code"] == "bad_request", params
            assert error["message"], params

        # '+' left unencoded in a URL arrives as a space: a 400 that says so.
        response = http.get("/api/activities?since=2026-01-01T00:00:00+02:00")
        assert response.status_code == 400
        assert "%2B" in response.json()["error"]["message"]

        # Injection-looking text in a free-text filter is just text: no match, no harm.
        for params in ({"q": "%' OR 1=1 --"}, {"agentName": "x' OR '1'='1"}, {"sessionId": "'; DELETE FROM x; --"}):
            response = http.get("/api/activities", params=params)
            assert response.status_code == 200, params
            assert response.json() == {"items": [], "nextCursor": None}

        some_id = str(seeded[0]["id"])
        for path in (
            "/api/activities/not-a-uuid",
            "/api/activities/' OR 1=1 --",
            f"/api/activities/{some_id}x",
            "/api/activities/" + "a" * 500,
            "/api/activities/not-a-uuid/events",
        ):
            response = http.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found", path
        for params in ({"limit": "0"}, {"limit": "1001"}, {"cursor": "garbage"}, {"cursor": "ZTE6LTE"}):
            response = http.get(f"/api/activities/{some_id}/events", params=params)
            assert response.status_code == 400, params
            assert response.json()["error"]["code"] == "bad_request"

    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT count(*) FROM agent_activities WHERE organization_id = %s", (ORG,)).fetchone()
    assert row == (ROWS,)
    assert "unhandled error" not in server.log()


def test_search_needs_a_token(server: ServerProcess) -> None:
    for path in ("/api/activities", f"/api/activities/{uuid.uuid4()}", f"/api/activities/{uuid.uuid4()}/events"):
        response = httpx.get(f"{server.base_url}{path}", timeout=30)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"


def test_openapi_documents_the_query_api(server: ServerProcess) -> None:
    schema = httpx.get(f"{server.base_url}/schema/openapi.json", timeout=30).json()
    search = schema["paths"]["/api/activities"]["get"]
    names = {p["name"] for p in search["parameters"]}
    assert names >= {"status", "agentType", "agentName", "sessionId", "category", "since", "until", "q", "limit"}
    assert "cursor" in names
    assert set(search["responses"]) >= {"200", "400", "401"}
    assert "/api/activities/{activity_id}/events" in schema["paths"]
    assert "/metrics" in schema["paths"]


def test_nul_in_a_stream_filter_is_a_400_not_a_broken_stream(server: ServerProcess) -> None:
    """A NUL byte used to pass validation and fail in SQL after the stream had answered 200."""
    response = httpx.get(
        f"{server.base_url}/api/activity/stream", params={"sessionId": "a\x00b"}, headers=server.auth(ORG), timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
