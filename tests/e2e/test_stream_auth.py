"""Organization isolation on every path of the stream, and the 401/400 contract."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.e2e.conftest import SECRET, ServerProcess, make_token
from tests.e2e.sse import SSEClient
from tests.e2e.writers import assert_exactly, write_batch
from tests.helpers import run_psql

STREAM = "/api/activity/stream"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(org: str = "org-a", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"org_id": org, "iat": now, "exp": now + 600, **extra}


def _bad_tokens() -> dict[str, str]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = make_token("org-a")
    header, payload, signature = good.split(".")
    forged_payload = _b64(_claims("org-b"))
    return {
        "garbage": "not-a-jwt",
        "two-parts": f"{header}.{payload}",
        "bad-base64": "!!!.???.***",
        "empty-signature": f"{header}.{payload}.",
        "expired": make_token("org-a", ttl=-60),
        "not-yet-valid": make_token("org-a", nbf=int(time.time()) + 600),
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.",
        "alg-none-with-signature": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.{signature}",
        "hs512-same-secret": _hmac_token("HS512", SECRET.encode()),
        "hs384-same-secret": _hmac_token("HS384", SECRET.encode()),
        "hs256-other-secret": make_token("org-a", secret="another-secret-also-long-enough-0123456789"),
        "rs256": jwt.encode(_claims(), rsa_key, algorithm="RS256"),
        "es256": jwt.encode(_claims(), ec_key, algorithm="ES256"),
        # The classic algorithm confusion: HS256 keyed with a public key a client could know.
        "hs256-keyed-with-public-pem": _hmac_token("HS256", rsa_public_pem),
        "payload-swapped-to-org-b": f"{header}.{forged_payload}.{signature}",
        "no-org-claim": make_token(None),
        "org-in-other-claim": make_token("org-a", claim="org"),
        "empty-org": make_token(""),
        "org-is-a-list": jwt.encode({**_claims(), "org_id": ["org-a"]}, SECRET, algorithm="HS256"),
        "org-is-null": jwt.encode({**_claims(), "org_id": None}, SECRET, algorithm="HS256"),
        "org-too-long": make_token("o" * 201),
    }


def _hmac_token(alg: str, key: bytes) -> str:
    """Signed by hand: PyJWT warns (an error under pytest) about a 48-byte key for HS384/HS512."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(_claims())}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _request(
    server: ServerProcess, how: str, token: str | None, params: dict[str, str] | None = None
) -> httpx.Response:
    """GET the stream with the token sent `how`; returns the response with at most 64 KB of body read."""
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    query = dict(params or {})
    if token is not None:
        if how == "header":
            headers["Authorization"] = f"Bearer {token}"
        elif how == "query":
            query["access_token"] = token
        else:
            cookies["pgactivity_token"] = token
    with (
        httpx.Client(timeout=10, cookies=cookies) as http,
        http.stream("GET", f"{server.base_url}{STREAM}", headers=headers, params=query) as response,
    ):
        if response.status_code == 200:
            body = b""
            deadline = time.monotonic() + 15
            for chunk in response.iter_bytes():
                body += chunk
                if b"\ndata: " in body or len(body) > 65536 or time.monotonic() > deadline:
                    break
            response._content = body
        else:
            response.read()
        return response


def _assert_json_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body


def test_bad_tokens_are_401_json_via_header_query_and_cookie(server: ServerProcess) -> None:
    tokens = _bad_tokens()
    for how in ["header", "query", "cookie"]:
        for name, token in tokens.items():
            response = _request(server, how, token)
            try:
                _assert_json_error(response, 401, "unauthorized")
            except AssertionError as exc:
                raise AssertionError(f"token {name!r} via {how}: {exc}") from None
            assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
        _assert_json_error(_request(server, how, None), 401, "unauthorized")
        # The same transport with a good token works, so the 401s above are about the tokens.
        ok = _request(server, how, make_token("org-a"))
        assert ok.status_code == 200, f"good token via {how}: {ok.status_code}"
        assert b'"type": "snapshot"' in ok.content
    # Tokens never reach the logs, not even refused ones.
    log = server.log()
    for name, token in tokens.items():
        if len(token) > 20:
            assert token not in log, f"token {name!r} was logged"


def test_malformed_authorization_headers_are_401(server: ServerProcess) -> None:
    good = make_token("org-a")
    for value in ["Bearer", "bearer", f"Basic {good}", f"Token {good}", "Bearer not.a.jwt", good]:
        with httpx.Client(timeout=10) as http:
            response = http.get(f"{server.base_url}{STREAM}", headers={"Authorization": value})
        _assert_json_error(response, 401, "unauthorized")
    # A bad header is not rescued by a good query token: the header wins, as documented for Bearer.
    with httpx.Client(timeout=10) as http:
        response = http.get(
            f"{server.base_url}{STREAM}", headers={"Authorization": "Bearer nope"}, params={"access_token": good}
        )
    _assert_json_error(response, 401, "unauthorized")


def test_bad_parameters_are_400_json(server: ServerProcess) -> None:
    cases: list[tuple[dict[str, str], dict[str, str | bytes]]] = [
        # Digits, but not ASCII: `²` and `¹` made int() fail (a 500), `٣` and fullwidth digits were read as numbers.
        ({"lastEventId": "²"}, {}),
        ({"lastEventId": "٣"}, {}),
        ({"lastEventId": "\uff11"}, {}),  # fullwidth one
        ({}, {"Last-Event-ID": b"\xb2"}),
        ({}, {"Last-Event-ID": b"\xb9"}),
        ({}, {"Last-Event-ID": b"\xa01"}),  # a no-break space is not HTTP whitespace
        ({"lastEventId": "+1"}, {}),
        ({"lastEventId": " 1"}, {}),
        ({"lastEventId": "1_0"}, {}),
        ({"lastEventId": "abc"}, {}),
        ({"lastEventId": "-1"}, {}),
        ({"lastEventId": "1.5"}, {}),
        ({"lastEventId": "1e3"}, {}),
        ({"lastEventId": "9" * 40}, {}),
        ({}, {"Last-Event-ID": "abc"}),
        ({}, {"Last-Event-ID": "-5"}),
        ({"sessionId": ""}, {}),
        ({"agentType": ""}, {}),
        ({"category": ""}, {}),
        ({"sessionId": "s" * 201}, {}),
    ]
    for params, headers in cases:
        with httpx.Client(timeout=10) as http:
            response = http.get(
                f"{server.base_url}{STREAM}", params=params, headers={**server.auth("org-a"), **headers}
            )
        try:
            _assert_json_error(response, 400, "bad_request")
        except AssertionError as exc:
            raise AssertionError(f"{params} {headers}: {exc}") from None


def _all_text(client: SSEClient) -> str:
    return "\n".join(json.dumps(e.data) for e in client.events)


def _assert_only(client: SSEClient, org: str, foreign_marker: str) -> None:
    for event in client.events:
        assert event.data["organizationId"] == org, event.data
        for activity in event.data.get("activities", []):
            assert activity["organizationId"] == org, activity
    assert foreign_marker not in _all_text(client)


def test_events_of_one_organization_never_reach_another(server: ServerProcess) -> None:
    url = server.db_url
    # Both organizations share agent types, sessions and categories so that only the
    # organization tells them apart; org-a gets many more events, so its seqs run far ahead.
    common = {"agent_type": "executor", "session_id": "ses-shared", "category": "cat-shared"}
    write_batch(url, "org-b", 3, agent_name="secret-of-b", **common)
    a_last = write_batch(url, "org-a", 30, agent_name="secret-of-a", **common)
    b_last = write_batch(url, "org-b", 2, agent_name="secret-of-b", **common)
    assert (a_last, b_last) == (30, 5)

    base = f"{server.base_url}{STREAM}"
    token_b = make_token("org-b")
    clients = {
        # New connection: snapshot then live.
        "snapshot": SSEClient(base, token_b),
        # Replay from the start, by header and by query parameter.
        "replay-header": SSEClient(base, token_b, last_event_id="0"),
        "replay-query": SSEClient(base, token_b, params={"lastEventId": "0"}),
        # An id only org-a has reached: org-b has no seq 20, so it gets a reset snapshot of org-b.
        "future-id": SSEClient(base, token_b, last_event_id="20"),
        # Filters that match org-a's rows exactly.
        "filters": SSEClient(base, token_b, params=dict(sessionId="ses-shared", agentType="executor")),
        "filter-category-replay": SSEClient(base, token_b, params={"category": "cat-shared", "lastEventId": "2"}),
        "filter-other-session": SSEClient(base, token_b, params={"sessionId": "ses-only-a"}),
    }
    control = SSEClient(base, make_token("org-a"), last_event_id="0").start()
    for client in clients.values():
        client.start()
    try:
        for client in clients.values():
            client.wait_for(lambda c: len(c.events) >= 1)
        # Live: both organizations write while everyone is connected.
        write_batch(url, "org-a", 20, agent_name="secret-of-a", **common)
        write_batch(url, "org-a", 5, agent_name="secret-of-a", session_id="ses-only-a")
        write_batch(url, "org-b", 4, agent_name="secret-of-b", **common)
        b_final = b_last + 4
        # The control client of org-a sees all of org-a: the stream works, isolation is not silence.
        control.wait_for(lambda c: c.seqs()[-1:] == [55], timeout=30)
        assert_exactly(control.seqs(), 1, 55)
        _assert_only(control, "org-a", "secret-of-b")

        for name in ["snapshot", "replay-header", "replay-query", "future-id", "filters", "filter-category-replay"]:
            clients[name].wait_for(lambda c: c.last_event_id == str(b_final), timeout=30)
        # Give org-a's trailing events time to (wrongly) arrive before judging.
        write_batch(url, "org-a", 1, agent_name="secret-of-a", **common)
        control.wait_for(lambda c: c.seqs()[-1:] == [56], timeout=30)
        time.sleep(0.5)

        for name, client in clients.items():
            try:
                _assert_only(client, "org-b", "secret-of-a")
            except AssertionError as exc:
                raise AssertionError(f"client {name}: {exc}") from None

        snap = clients["snapshot"].events[0]
        assert snap.type == "snapshot"
        assert snap.id == str(b_last)
        assert len(snap.data["activities"]) == 5
        assert_exactly(clients["snapshot"].seqs(), b_last + 1, b_final)
        assert_exactly(clients["replay-header"].seqs(), 1, b_final)
        assert_exactly(clients["replay-query"].seqs(), 1, b_final)
        future = clients["future-id"]
        assert future.events[0].type == "snapshot"
        assert future.events[0].data["reset"] is True
        assert future.events[0].id == str(b_last)
        assert_exactly(future.seqs(), b_last + 1, b_final)
        assert_exactly(clients["filters"].seqs(), b_last + 1, b_final)
        assert_exactly(clients["filter-category-replay"].seqs(), 3, b_final)
        other = clients["filter-other-session"]
        assert other.events[0].type == "snapshot"
        assert other.events[0].data["activities"] == []
        assert other.seqs() == []
    finally:
        control.stop()
        for client in clients.values():
            client.stop()


def test_a_dba_write_with_psql_reaches_only_its_organization(server: ServerProcess) -> None:
    a = SSEClient(f"{server.base_url}{STREAM}", make_token("org-a")).start()
    b = SSEClient(f"{server.base_url}{STREAM}", make_token("org-b")).start()
    try:
        a.wait_for(lambda c: len(c.events) >= 1)
        b.wait_for(lambda c: len(c.events) >= 1)
        run_psql(
            server.db_url,
            "INSERT INTO agent_activities (organization_id, agent_type, agent_name) VALUES ('org-a', 'x', 'psql-a');"
            "UPDATE agent_activities SET message = 'hello' WHERE organization_id = 'org-a';"
            "INSERT INTO agent_activities (organization_id, agent_type, agent_name) VALUES ('org-b', 'x', 'psql-b');",
        )
        a.wait_for(lambda c: len(c.live()) >= 2)
        b.wait_for(lambda c: len(c.live()) >= 1)
        time.sleep(0.3)
        assert [(e.seq, e.type) for e in a.live()] == [(1, "agent_started"), (2, "agent_progress")]
        assert [(e.seq, e.data["agentName"]) for e in b.live()] == [(1, "psql-b")]
        _assert_only(a, "org-a", "psql-b")
        _assert_only(b, "org-b", "psql-a")
    finally:
        a.stop()
        b.stop()
