"""A fake Slack Web API on 127.0.0.1, run by the tests in a thread.

It speaks what pgactivity uses (auth.test, chat.postMessage, chat.update,
conversations.history), stores messages like Slack does (a post is stored when
it is received, even if the answer never reaches the caller), records every
call, and can misbehave on demand: answer 429 with Retry-After (and count
callers that come back too early), answer 500, hold chat.postMessage answers,
answer a post late and only then store it (as Slack may, after its caller gave
up), answer `{"ok": false, "error": ...}` to the messages whose text holds a
marker, or be down altogether (connection refused).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TOKEN = "xoxb-fake-token-for-tests"
CHANNEL = "C0PGACTIVITY"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int
    error: str | None
    at: float  # time.monotonic() when handled (stored, for a post)
    received: float = 0.0  # time.monotonic() when the request arrived


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    metadata: dict[str, Any] | None
    posted_at: float  # time.monotonic() when received
    updates: list[str] = field(default_factory=list)  # texts of each chat.update, in order
    update_times: list[float] = field(default_factory=list)

    @property
    def activity_id(self) -> str | None:
        payload = (self.metadata or {}).get("event_payload") or {}
        value = payload.get("activity_id")
        return str(value) if value is not None else None


class FakeSlack:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.fail_status: int | None = None
        self.latency = 0.0  # seconds before each answer, as a slow Slack
        self.early_calls = 0
        self._rate_limits: dict[str, tuple[int, float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._hold_posts = False
        self._slow_posts: tuple[int, float] = (0, 0.0)
        self._errors: list[tuple[str, str, int | None]] = []
        self._released = threading.Event()
        self._ts = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self) -> FakeSlack:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: connections are refused until start() again (same port)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self.lock:
            connections, self._connections = self._connections, set()
        for conn in connections:  # kept-alive connections too: down means down
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    # -- misbehaviour ----------------------------------------------------------------

    def rate_limit(self, method: str, times: int, retry_after: float) -> None:
        """Answer the next `times` calls of `method` with 429 and Retry-After."""
        with self.lock:
            self._rate_limits[method] = (times, retry_after)

    def hold_posts(self) -> None:
        """Store chat.postMessage calls but keep their answers until release()."""
        self._released.clear()
        self._hold_posts = True

    def release(self) -> None:
        self._hold_posts = False
        self._released.set()

    def slow_posts(self, seconds: float, times: int = 1) -> None:
        """The next `times` chat.postMessage calls are stored and answered `seconds` after they arrive."""
        with self.lock:
            self._slow_posts = (times, seconds)

    def error_when(self, marker: str, error: str, times: int | None = None) -> None:
        """chat.postMessage and chat.update calls whose text holds `marker` get {"ok": false, "error": error}
        (the first `times` of them; None: all)."""
        with self.lock:
            self._errors.append((marker, error, times))

    def _take_slow_post(self) -> float:
        with self.lock:
            times, seconds = self._slow_posts
            if times <= 0:
                return 0.0
            self._slow_posts = (times - 1, seconds)
            return seconds

    def _planned_error(self, params: dict[str, Any]) -> str | None:
        text = str(params.get("text") or "")
        for i, (marker, error, times) in enumerate(self._errors):
            if marker in text and (times is None or times > 0):
                if times is not None:
                    self._errors[i] = (marker, error, times - 1)
                return error
        return None

    # -- what happened -----------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def snapshot(self) -> list[Message]:
        with self.lock:
            return sorted(self.messages.values(), key=lambda m: float(m.ts))

    def messages_of(self, activity_id: str) -> list[Message]:
        return [m for m in self.snapshot() if m.activity_id == activity_id]

    def final_text(self, activity_id: str) -> str | None:
        messages = self.messages_of(activity_id)
        if len(messages) != 1:
            return None
        message = messages[0]
        return message.updates[-1] if message.updates else message.text

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise TimeoutError(f"fake Slack: {what} not met after {timeout}s; calls: {self.summary()}")

    def summary(self) -> str:
        with self.lock:
            counts: dict[str, int] = {}
            for c in self.calls:
                key = f"{c.method}:{c.status}{':' + c.error if c.error else ''}"
                counts[key] = counts.get(key, 0) + 1
            return f"{counts}, {len(self.messages)} messages"

    # -- the API -----------------------------------------------------------------------

    def handle(
        self, method: str, params: dict[str, Any], token: str | None, received: float | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        now = time.monotonic()
        with self.lock:
            status, body, headers = self._answer(method, params, token, now)
            self.calls.append(Call(method, params, status, body.get("error"), now, received or now))
        return status, body, headers

    def _answer(
        self, method: str, params: dict[str, Any], token: str | None, now: float
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.fail_status is not None:
            return self.fail_status, {"ok": False, "error": "internal_error"}, {}
        blocked_until = self._blocked_until.get(method, 0.0)
        if now < blocked_until:
            self.early_calls += 1
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(math.ceil(blocked_until - now))}
        times, retry_after = self._rate_limits.get(method, (0, 0.0))
        if times > 0:
            self._rate_limits[method] = (times - 1, retry_after)
            self._blocked_until[method] = now + retry_after
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(math.ceil(retry_after))}
        if token != self.token:
            return 200, {"ok": False, "error": "invalid_auth" if token else "not_authed"}, {}
        if method in ("chat.postMessage", "chat.update"):
            planned = self._planned_error(params)
            if planned is not None:
                return 200, {"ok": False, "error": planned}, {}
        if method == "auth.test":
            return 200, {"ok": True, "team": "Fake Team", "user": "pgactivity", "team_id": "T1", "user_id": "U1"}, {}
        if method == "chat.postMessage":
            channel, text = str(params.get("channel") or ""), str(params.get("text") or "")
            if not channel:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            if not text:
                return 200, {"ok": False, "error": "no_text"}, {}
            metadata = params.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            self.messages[ts] = Message(channel, ts, text, metadata, now)
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": {"text": text}}, {}
        if method == "chat.update":
            message = self.messages.get(str(params.get("ts")))
            if message is None or message.channel != params.get("channel"):
                return 200, {"ok": False, "error": "message_not_found"}, {}
            message.text = str(params.get("text") or "")
            message.updates.append(message.text)
            message.update_times.append(now)
            return 200, {"ok": True, "channel": message.channel, "ts": message.ts, "text": message.text}, {}
        if method == "conversations.history":
            oldest = float(params.get("oldest") or 0)
            with_metadata = str(params.get("include_all_metadata")).lower() in ("1", "true")
            found = [
                {"type": "message", "ts": m.ts, "text": m.text, **({"metadata": m.metadata} if with_metadata else {})}
                for m in sorted(self.messages.values(), key=lambda m: float(m.ts), reverse=True)
                if m.channel == params.get("channel") and float(m.ts) >= oldest
            ]
            return 200, {"ok": True, "messages": found, "has_more": False}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with fake.lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake.lock:
                fake._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            url = urlsplit(self.path)
            method = url.path.removeprefix("/api/")
            params: dict[str, Any] = dict(parse_qsl(url.query))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if raw:
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    params.update(json.loads(raw))
                else:
                    params.update(parse_qsl(raw.decode()))
            auth = self.headers.get("Authorization") or ""
            token = auth.removeprefix("Bearer ").strip() or params.get("token")
            received = time.monotonic()
            if method == "chat.postMessage":
                time.sleep(fake._take_slow_post())  # then stored: Slack answering (and storing) late
            status, body, headers = fake.handle(method, params, token, received)
            if fake.latency:
                time.sleep(fake.latency)
            if method == "chat.postMessage" and fake._hold_posts:
                fake._released.wait(60)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the caller is gone (killed while we held its answer)

    return Handler
