"""Token lifetime and keys against the real server: `exp` is required, an open stream ends when its
token expires (and the client resumes with a fresh one, losing nothing), a token can never make the
JWT library fail into a 500, and a public key that cannot work stops `serve` at start."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import SECRET, ServerFactory, ServerProcess, make_token
from tests.e2e.sse import SSEClient
from tests.e2e.test_ws import open_ws, ws_url
from tests.helpers import run_psql

STREAM = "/api/activity/stream"


def no_exp_token(org: str) -> str:
    return jwt.encode({"org_id": org, "iat": int(time.time())}, SECRET, algorithm="HS256")


def short_token(org: str, seconds: float) -> str:
    return jwt.encode({"org_id": org, "exp": int(time.time() + seconds)}, SECRET, algorithm="HS256")


def stream_status(srv: ServerProcess, token: str, **headers: str) -> int:
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "GET", f"{srv.base_url}{STREAM}", headers={"Authorization": f"Bearer {token}", **headers}
        ) as response,
    ):
        return response.status_code


def start_activity(url: str, org: str, agent_type: str) -> None:
    run_psql(url, f"SELECT agent_activity_start(organization_id => '{org}', agent_type => '{agent_type}');")


def ws_messages_until_close(ws: Any, timeout: float = 30) -> tuple[list[dict[str, Any]], int | None]:
    messages: list[dict[str, Any]] = []
    try:
        while True:
            message = json.loads(ws.recv(timeout=timeout))
            if message != {"type": "heartbeat"}:
                messages.append(message)
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code if closed.rcvd is not None else None


def test_a_token_without_exp_is_refused_on_every_endpoint_unless_the_operator_opts_out(
    server_factory: ServerFactory,
) -> None:
    strict = server_factory()
    token = no_exp_token("org-a")
    assert stream_status(strict, token) == 401
    response = httpx.get(f"{strict.base_url}/api/activities", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 401
    assert "'exp'" in response.json()["error"]["message"]
    with open_ws(ws_url(strict, access_token=token)) as ws:
        messages, code = ws_messages_until_close(ws)
    assert code == 4401
    assert messages[0]["error"]["code"] == "unauthorized"
    assert stream_status(strict, make_token("org-a")) == 200  # a token with exp is fine

    lenient = server_factory(env={"PGACTIVITY_JWT_REQUIRE_EXP": "false"})
    assert stream_status(lenient, token) == 200
    assert stream_status(lenient, make_token("org-a", ttl=-60)) == 401  # an exp that is there still counts


def test_an_sse_stream_ends_when_its_token_expires_and_resumes_with_a_fresh_token(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(env={"PGACTIVITY_JWT_LEEWAY_SECONDS": "0"})
    org = "org-exp"
    token = short_token(org, 6)
    client = SSEClient(f"{srv.base_url}{STREAM}", token).start()
    try:
        client.wait_for(lambda c: len(c.snapshots()) == 1)
        start_activity(srv.db_url, org, "before-expiry")
        client.wait_for(lambda c: c.seqs() == [1])
        # The server ends the stream at exp, saying why: the client is not left reading for ever.
        client.wait_for(lambda c: not c.running, timeout=20)
        assert client.error is None
        assert client.ends == ["token_expired"]
    finally:
        client.stop()
    assert "reason=token_expired" in srv.log()

    # What was written after the end is not lost: the same token is refused, a fresh one resumes.
    start_activity(srv.db_url, org, "after-expiry")
    assert stream_status(srv, token, **{"Last-Event-ID": "1"}) == 401
    resumed = SSEClient(f"{srv.base_url}{STREAM}", make_token(org), last_event_id=client.last_event_id).start()
    try:
        resumed.wait_for(lambda c: c.seqs() == [2])
        assert resumed.snapshots() == []
        assert resumed.live()[0].data["agentType"] == "after-expiry"
    finally:
        resumed.stop()


def test_a_websocket_stream_ends_with_4401_when_its_token_expires(server_factory: ServerFactory) -> None:
    srv = server_factory(env={"PGACTIVITY_JWT_LEEWAY_SECONDS": "1"})
    org = "org-ws-exp"
    token = short_token(org, 2)
    with open_ws(ws_url(srv, access_token=token)) as ws:
        messages, code = ws_messages_until_close(ws)
    assert code == 4401
    assert messages[0]["type"] == "snapshot"
    assert messages[-1] == {"type": "end", "reason": "token_expired"}
    # Refused after that, not accepted again (a reconnect must not loop).
    with open_ws(ws_url(srv, access_token=token, lastEventId="0")) as ws:
        messages, code = ws_messages_until_close(ws)
    assert code == 4401
    assert messages == [{"type": "error", "error": {"code": "unauthorized", "message": "token expired"}}]


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.decode()


def test_an_es256_header_against_an_rsa_key_is_a_401_not_a_500(server_factory: ServerFactory) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    srv = server_factory(env={"PGACTIVITY_JWT_SECRET": "", "PGACTIVITY_JWT_PUBLIC_KEY": _pem(rsa_key)})
    claims = {"org_id": "org-a", "exp": int(time.time()) + 600}
    swapped = jwt.encode(claims, ec_key, algorithm="ES256")
    for path in (STREAM, "/api/activities"):
        response = httpx.get(f"{srv.base_url}{path}", headers={"Authorization": f"Bearer {swapped}"}, timeout=10)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
    with open_ws(ws_url(srv, access_token=swapped)) as ws:
        _, code = ws_messages_until_close(ws)
    assert code == 4401
    good = jwt.encode(claims, rsa_key, algorithm="RS256")
    assert stream_status(srv, good) == 200
    assert "Traceback" not in srv.log()


def test_serve_refuses_to_start_with_a_public_key_that_cannot_work(server_factory: ServerFactory) -> None:
    cases = {
        "not a key": "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        "an RSA key for ES256 only": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }
    for name, pem in cases.items():
        env = {"PGACTIVITY_JWT_SECRET": "", "PGACTIVITY_JWT_PUBLIC_KEY": pem}
        if name.endswith("ES256 only"):
            env["PGACTIVITY_JWT_ALGORITHMS"] = "ES256"
        srv = server_factory(env=env, start=False)
        srv.start(wait_ready=False)
        assert srv.proc is not None
        assert srv.proc.wait(30) == 2, f"{name}: {srv.log()}"
        assert "PGACTIVITY_JWT_PUBLIC_KEY" in srv.log(), name
        assert "Traceback" not in srv.log(), name
