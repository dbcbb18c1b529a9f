"""A real SSE client (httpx + httpx-sse) running in a thread, collecting events."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import connect_sse


@dataclass
class Received:
    id: str | None
    data: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.data["seq"])

    @property
    def type(self) -> str:
        return str(self.data["type"])


@dataclass
class SSEClient:
    """Connects to the stream and records every event until stop() or the stream ends.

    `reconnect=True` behaves like a browser's EventSource: when the stream ends
    it reconnects with Last-Event-ID set to the last id it received.
    """

    url: str
    token: str
    params: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None
    reconnect: bool = False
    events: list[Received] = field(default_factory=list)
    comments: int = 0
    connections: int = 0
    status_codes: list[int] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _response: httpx.Response | None = None
    _connected: threading.Event = field(default_factory=threading.Event)

    def start(self) -> SSEClient:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 10) -> None:
        if not self._connected.wait(timeout):
            raise TimeoutError(f"SSE client not connected: {self.error!r}")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._once()
                if not self.reconnect:
                    return
                time.sleep(0.05)
        except BaseException as exc:
            if not self._stop.is_set():
                self.error = exc

    def _once(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(5, read=30)) as client,
                connect_sse(client, "GET", self.url, headers=headers, params=self.params) as source,
            ):
                self._response = source.response
                self.status_codes.append(source.response.status_code)
                if source.response.status_code != 200:
                    return
                self.connections += 1
                self._connected.set()
                for sse in source.iter_sse():
                    if self._stop.is_set():
                        return
                    if not sse.data:
                        continue
                    self.events.append(Received(sse.id or None, json.loads(sse.data)))
                    if sse.id:
                        self.last_event_id = sse.id
        except (httpx.HTTPError, RuntimeError):
            if not self.reconnect:
                raise

    def drop(self) -> None:
        """Close the current connection (a dropped network); a reconnecting client comes back."""
        response = self._response
        if response is not None:
            response.close()

    def stop(self) -> None:
        self._stop.set()
        self.drop()
        if self._thread is not None:
            self._thread.join(10)

    def live(self) -> list[Received]:
        return [e for e in self.events if e.type != "snapshot"]

    def seqs(self) -> list[int]:
        return [e.seq for e in self.live()]

    def wait_for(self, predicate: Any, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            if self.error is not None:
                raise self.error
            time.sleep(0.02)
        raise TimeoutError(f"condition not met; got {len(self.events)} events, last id {self.last_event_id}")
