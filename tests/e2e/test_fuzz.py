"""Fuzz every query parameter and header of every endpoint of the real server.

Hostile values (empty, huge, NUL bytes, control characters, odd Unicode and
Unicode digits, invalid UTF-8 in percent escapes, injection-looking text,
almost-valid numbers, dates, cursors and tokens) are first sent one at a time
in every parameter and header, then Hypothesis combines them with random text
and good, bad or missing tokens. None may get a 5xx, end a WebSocket with
anything but 4400/4401/4403, or leave a traceback or an ERROR in the server's
log. Hypothesis runs derandomized (the same examples on every run, so CI
cannot flake) with a fixed number of examples per endpoint, so the whole test
takes seconds; a failure is shrunk to the smallest request that shows it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.e2e.conftest import ServerProcess, make_token
from tests.helpers import run_psql

ORG = "org-fuzz"
EXAMPLES = 60

# Values chosen to hit the parsers' edges; Hypothesis mixes them with random text.
HOSTILE = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\r\n",
    "²",
    "٣",
    "\uff11",
    "-1",
    "+1",
    "1_0",
    "1e3",
    "0x10",
    "1.5",
    "9" * 40,
    "18446744073709551616",
    "0",
    "1",
    "running",
    "' OR 1=1 --",
    "%",
    "%00",
    "_%\\",
    "\u202e\u200b",
    "🙂" * 50,
    "\U0010ffff",
    "x" * 5_000,
    "2026-01-30T12:00:00Z",
    "2026-01-30T12:00:00+02:00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "10000-01-01",
    "infinity",
    "YTE6MTIzOjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw",  # a1:123:<32 zeros>
    "ZTE6NQ",  # e1:5
    "ZTE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
    "00000000-0000-0000-0000-000000000000",
]
# Percent escapes that are not UTF-8: lone surrogates, overlong forms, bare continuation bytes.
RAW_ESCAPES = ["%FF", "%C0%80", "%ED%A0%80", "%80", "%F4%90%80%80", "%E2%82", "%00", "%25", "%2B", "%26%3D"]


@dataclass(frozen=True)
class Raw:
    """A query value sent exactly as these percent escapes."""

    escaped: str


def query_values(longest: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([v for v in HOSTILE if len(v) <= longest]),
        st.sampled_from([v for v in HOSTILE if len(v) <= longest]),  # twice: they are what breaks things
        st.text(max_size=30),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.from_regex(r"[0-9]{1,25}", fullmatch=True),
        st.builds(lambda c, n: c * n, st.sampled_from(["x", "9", "\x00", "é", "%"]), st.integers(1, longest)),
        st.lists(st.sampled_from(RAW_ESCAPES), min_size=1, max_size=4).map("".join).map(Raw),
    )


query_value = query_values(8_000)  # "é" * 8000 is a 48 KB query; httpx stops at 64 KiB
# uvicorn's WebSocket handshake refuses a request line over 8 KiB (414): keep under it.
ws_query_value = query_values(1_000)


def _sendable(value: str) -> bool:
    return value.isprintable() and all(ord(c) < 256 for c in value)


# Header values: what an HTTP client can put on the wire (Latin-1, no CR, LF or NUL, no spaces at the ends).
header_text = st.one_of(
    st.sampled_from([v for v in HOSTILE if _sendable(v)]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=200),
    st.builds(lambda n: "9" * n, st.integers(1, 10_000)),
).map(lambda v: v.strip(" \t"))


def encode_query(params: dict[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        escaped = value.escaped if isinstance(value, Raw) else quote(value, safe="")
        parts.append(f"{name}={escaped}")
    return "&".join(parts)


@st.composite
def request_parts(
    draw: Any, names: list[str], headers: list[str], values: st.SearchStrategy[Any] = query_value
) -> tuple[dict[str, Any], dict[str, str]]:
    params = draw(st.dictionaries(st.sampled_from(names), values, max_size=len(names)))
    chosen = draw(st.dictionaries(st.sampled_from(headers), header_text, max_size=len(headers)))
    return params, chosen


@st.composite
def credentials(draw: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A good token by header, query or cookie, a broken one, or none."""
    good = make_token(ORG)
    how = draw(st.sampled_from(["header", "query", "cookie", "garbage-header", "none"]))
    if how == "header":
        return {}, {"Authorization": f"Bearer {good}"}
    if how == "query":
        return {"access_token": good}, {}
    if how == "cookie":
        return {}, {"Cookie": f"pgactivity_token={good}"}
    if how == "garbage-header":
        return {}, {"Authorization": draw(header_text)}
    return {}, {}


def _latin1(headers: dict[str, str]) -> dict[str, bytes]:
    return {k: v.encode("latin-1") for k, v in headers.items()}


@contextlib.contextmanager
def http_client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(10, read=15)) as client:
        yield client


def check_http(client: httpx.Client, path: str, params: dict[str, Any], headers: dict[str, str]) -> None:
    url = path + ("?" + encode_query(params) if params else "")
    with client.stream("GET", url, headers=_latin1(headers)) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            body = b""
            for chunk in response.iter_bytes():  # the first event is enough: the stream never ends
                body += chunk
                if b"\n\n" in body[len(b"retry: 2000\n\n") :] or len(body) > 65536:
                    break
        else:
            response.read()
        assert response.status_code < 500, (url, headers, response.status_code, response.text[:500])
        if response.status_code in (400, 401):
            assert response.json()["error"]["code"], url


def check_ws(server: ServerProcess, params: dict[str, Any], headers: dict[str, str]) -> None:
    url = f"ws://127.0.0.1:{server.port}/api/activity/ws" + ("?" + encode_query(params) if params else "")
    origin = headers.pop("Origin", None)
    status: int | None = None
    code: int | None = None
    try:
        with ws_connect(url, open_timeout=10, additional_headers=headers, origin=origin) as ws:  # type: ignore[arg-type]
            try:
                first = json.loads(ws.recv(timeout=15))
                assert isinstance(first, dict), first  # a snapshot, a replayed event, or an error
                if first.get("type") == "error":
                    ws.recv(timeout=15)  # the close that follows
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
    except InvalidStatus as refused:
        status = refused.response.status_code
    except InvalidHandshake:
        pass  # the client refused what it was asked to send (an odd Host or Origin): not the server's doing
    assert status is None or status < 500, (url, headers, status)
    assert code in (None, 4400, 4401, 4403), (url, headers, code)


FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.mark.slow
def test_no_query_parameter_or_header_of_any_endpoint_gets_a_5xx_or_a_traceback(server: ServerProcess) -> None:
    started = time.monotonic()
    run_psql(
        server.db_url,
        "".join(
            f"SELECT agent_activity_start(organization_id => '{ORG}', agent_type => 'fuzz', agent_name => 'a{i}', "
            f"session_id => 's{i % 2}', category => 'c', input_data => '{{\"prompt\": \"p{i}\"}}');"
            for i in range(5)
        ),
    )
    activity_id = run_psql(server.db_url, "SELECT id FROM agent_activities WHERE agent_name = 'a0';").stdout.strip()
    stream = ["sessionId", "agentType", "category", "lastEventId", "access_token"]
    search = ["status", "agentType", "agentName", "sessionId", "category", "since", "until", "q", "limit", "cursor"]
    endpoints: dict[str, tuple[list[str], list[str]]] = {
        "/api/activity/stream": (stream, ["Last-Event-ID", "Authorization", "Cookie"]),
        "/api/activities": ([*search, "access_token"], ["Authorization", "Cookie"]),
        f"/api/activities/{activity_id}": (["access_token"], ["Authorization", "Cookie"]),
        f"/api/activities/{activity_id}/events": (["limit", "cursor", "access_token"], ["Authorization", "Cookie"]),
        "/healthz": (["x"], ["Authorization"]),
        "/readyz": (["x"], ["Authorization"]),
        "/metrics": (["x"], ["Authorization"]),
        "/": (["access_token"], ["Cookie"]),
        "/static/dashboard.js": (["v"], ["If-None-Match"]),
        "/schema/openapi.json": (["x"], ["Accept"]),
    }

    good = {"Authorization": f"Bearer {make_token(ORG)}"}
    with http_client(server) as client:
        # 1. Every hostile value in every parameter and header, one at a time, with a good token.
        for path, (names, headers) in endpoints.items():
            for value in [*HOSTILE, *(Raw(e) for e in RAW_ESCAPES), "x" * 60_000]:  # httpx stops at 64 KiB URLs
                for name in names:
                    check_http(client, path, {name: value}, dict(good))
                if isinstance(value, str) and _sendable(value) and value == value.strip(" \t"):
                    for header in headers:
                        check_http(client, path, {}, {**good, header: value})

        # 2. Random combinations of them, random text, and tokens good, bad or missing.
        def fuzzer(path: str, names: list[str], headers: list[str]) -> Callable[[], None]:
            @FUZZ
            @given(parts=request_parts(names, headers), auth=credentials())
            def fuzz_endpoint(
                parts: tuple[dict[str, Any], dict[str, str]], auth: tuple[dict[str, Any], dict[str, str]]
            ) -> None:
                params, chosen = parts
                check_http(client, path, {**auth[0], **params}, {**auth[1], **chosen})

            return fuzz_endpoint

        for path, (names, headers) in endpoints.items():
            fuzzer(path, names, headers)()

        @FUZZ
        @given(segment=query_value)
        def fuzz_activity_id(segment: Any) -> None:
            escaped = segment.escaped if isinstance(segment, Raw) else quote(segment, safe="")
            for suffix in ("", "/events"):
                check_http(
                    client, f"/api/activities/{escaped}{suffix}", {}, {"Authorization": f"Bearer {make_token(ORG)}"}
                )

        fuzz_activity_id()

    # 3. The WebSocket: the same, one at a time, then combinations.
    for value in [*HOSTILE, *(Raw(e) for e in RAW_ESCAPES)]:
        if not isinstance(value, str) or len(value) <= 1_000:
            for name in ("lastEventId", "sessionId", "access_token"):  # the filters share one parser
                check_ws(server, {name: value}, dict(good))

    @settings(FUZZ, max_examples=EXAMPLES // 2)
    @given(
        parts=request_parts(stream, ["Authorization", "Cookie", "Origin", "Host"], ws_query_value), auth=credentials()
    )
    def fuzz_ws(parts: tuple[dict[str, Any], dict[str, str]], auth: tuple[dict[str, Any], dict[str, str]]) -> None:
        params, chosen = parts
        check_ws(server, {**auth[0], **params}, {**auth[1], **chosen})

    fuzz_ws()

    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    assert " ERROR " not in log, log[-5000:]
    assert time.monotonic() - started < 300  # bounded: a few seconds on a quiet machine
