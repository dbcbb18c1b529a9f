"""A real SSE client (httpx + httpx-sse) running in a thread, collecting events."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import connect_sse
from httpx_sse._decoders import SSEDecoder, SSELineDecoder


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
    Comment lines (heartbeats) are counted in `comments`, with their arrival
    times in `comment_times`. The message that says why the server ended a
    stream (`{"type": "end", "reason": ...}`, no id) is not an event: its
    reasons go to `ends`.
    """

    url: str
    token: str
    params: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None
    reconnect: bool = False
    events: list[Received] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)
    comments: int = 0
    comment_times: list[float] = field(default_factory=list)
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

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
                # httpx-sse's own decoders, read line by line so that comments can be counted.
                lines = SSELineDecoder()
                decoder = SSEDecoder()
                for text in source.response.iter_text():
                    for line in lines.decode(text):
                        if self._stop.is_set():
                            return
                        if line.startswith(":"):
                            self.comments += 1
                            self.comment_times.append(time.monotonic())
                            continue
                        sse = decoder.decode(line)
                        if sse is None or not sse.data:
                            continue
                        data = json.loads(sse.data)
                        if data.get("type") == "end":  # sse.id is the last id seen (SSE keeps it)
                            self.ends.append(str(data["reason"]))
                            continue
                        self.events.append(Received(sse.id or None, data))
                        if sse.id:
                            self.last_event_id = sse.id
        except (httpx.HTTPError, RuntimeError, OSError):
            if not self.reconnect:
                raise

    def drop(self) -> None:
        """Close the current connection (a dropped network); a reconnecting client comes back."""
        response = self._response
        if response is None:
            return
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            # Wakes the reading thread at once (close() alone does not interrupt a blocked recv).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:
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

    def snapshots(self) -> list[Received]:
        return [e for e in self.events if e.type == "snapshot"]

    def wait_for(self, predicate: Any, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            if self.error is not None:
                raise self.error
            time.sleep(0.02)
        raise TimeoutError(f"condition not met; got {len(self.events)} events, last id {self.last_event_id}")
