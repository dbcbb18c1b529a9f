"""`pgactivity tail`: follow an organization's stream in a terminal, one line per event.

It reads the same SSE stream as a browser and reconnects like one: with
`Last-Event-ID` set to the last event it printed, so nothing is lost or
repeated across reconnects. Agent names and messages are untrusted: control
characters (terminal escape sequences) are shown escaped, never sent raw, and
JSON of any depth is read to a bounded depth (jsondepth). When the server ends
the stream it says why (`{"type": "end", "reason": ...}`): tail reconnects,
with a fresh token when it mints its own.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import httpx
from httpx_sse import connect_sse

from pgactivity import jsondepth

STREAM_PATH = "/api/activity/stream"
READ_TIMEOUT_SECONDS = 90.0  # the server sends a heartbeat every 30 s by default
RETRY_MIN_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
MESSAGE_WIDTH = 160

SHORT_TYPES = {
    "agent_started": "started",
    "agent_progress": "progress",
    "agent_completed": "completed",
    "agent_failed": "failed",
    "snapshot": "snapshot",
}
COLORS = {"started": "36", "progress": "34", "completed": "32", "failed": "31", "snapshot": "35"}


class TailError(Exception):
    """The server refused the request for good (bad token, bad filter): retrying cannot help."""


def clean(value: object, limit: int = MESSAGE_WIDTH) -> str:
    """Printable text only: control and formatting characters are shown as escapes."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _clock(timestamp: object) -> str:
    if isinstance(timestamp, str):
        try:
            return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
        except ValueError:
            pass
    return datetime.now().strftime("%H:%M:%S")


def _agent(item: Mapping[str, Any]) -> str:
    agent_type = clean(item.get("agentType"), 60)
    name = item.get("agentName")
    return f"{agent_type}/{clean(name, 60)}" if name else agent_type


def _progress(value: object) -> str:
    return f"{value}%" if isinstance(value, int) else ""


@dataclass
class Formatter:
    color: bool = False

    def _paint(self, kind: str, text: str) -> str:
        code = COLORS.get(kind)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def event(self, event: Mapping[str, Any]) -> list[str]:
        """The lines to print for one event (a snapshot adds one per running activity)."""
        kind = SHORT_TYPES.get(str(event.get("type")), clean(event.get("type"), 20))
        seq = event.get("seq")
        head = f"{_clock(event.get('timestamp'))}  #{seq:<6}" if isinstance(seq, int) else f"{_clock(None)}  #?     "
        label = self._paint(kind, f"{kind:<9}")
        if kind == "snapshot":
            return self._snapshot(head, label, event)
        data = event.get("data")
        if not isinstance(data, dict):
            data = {}
        if kind == "started":
            status, detail = "running", self._where(event)
        elif kind == "progress":
            status, detail = f"running {_progress(data.get('progress'))}".rstrip(), clean(data.get("message"))
        elif kind == "completed":
            status, detail = "completed", clean(json.dumps(data.get("outputData"))) if data.get("outputData") else ""
        elif kind == "failed":
            status, detail = "failed", clean(data.get("error"))
        else:
            status, detail = "", ""
        return [f"{head} {label} {_agent(event):<28} {status:<13} {detail}".rstrip()]

    @staticmethod
    def _where(item: Mapping[str, Any]) -> str:
        parts = [f"session {clean(item.get('sessionId'), 60)}" if item.get("sessionId") else ""]
        parts.append(f"category {clean(item.get('category'), 60)}" if item.get("category") else "")
        return ", ".join(p for p in parts if p)

    def _snapshot(self, head: str, label: str, event: Mapping[str, Any]) -> list[str]:
        activities = [a for a in event.get("activities") or [] if isinstance(a, dict)]
        counts: dict[str, int] = {}
        for activity in activities:
            status = str(activity.get("status"))
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        reset = " (reset: events were missed)" if event.get("reset") else ""
        org = clean(event.get("organizationId"), 60)
        count = f"{len(activities)} {'activity' if len(activities) == 1 else 'activities'}"
        lines = [f"{head} {label} {org}: {count}{f' ({summary})' if summary else ''}{reset}"]
        for activity in reversed(activities):  # oldest first, like the events that follow
            if activity.get("status") == "running":
                progress = _progress(activity.get("progress"))
                lines.append(
                    f"{_clock(activity.get('updatedAt'))}  {'':7} {'':9} {_agent(activity):<28} "
                    f"{f'running {progress}'.rstrip():<13} {clean(activity.get('message'))}".rstrip()
                )
        return lines


@dataclass
class Tail:
    """Follows the stream until interrupted; reconnects with Last-Event-ID."""

    url: str
    token: Callable[[], str]  # called on every connection (a minted token can be renewed)
    filters: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None
    raw_json: bool = False
    color: bool = False
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr
    max_events: int | None = None
    printed: int = 0
    _connected: bool = False

    def run(self) -> int:
        delay = RETRY_MIN_SECONDS
        formatter = Formatter(color=self.color)
        while True:
            self._connected = False
            try:
                reason = self._once(formatter)
            except TailError as exc:
                self._note(f"error: {exc}")
                return 2
            except _Done:
                return 0
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self._connected:
                delay = RETRY_MIN_SECONDS
            wait = delay * random.uniform(0.9, 1.1)
            resume = f", resuming after #{self.last_event_id}" if self.last_event_id else ""
            self._note(f"disconnected ({reason}); reconnecting in {wait:.1f}s{resume}")
            time.sleep(wait)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _note(self, text: str) -> None:
        print(f"# {text}", file=self.err, flush=True)

    def _once(self, formatter: Formatter) -> str:
        headers = {"Authorization": f"Bearer {self.token()}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_SECONDS)
        with (
            httpx.Client(timeout=timeout) as client,
            connect_sse(
                client, "GET", self.url.rstrip("/") + STREAM_PATH, headers=headers, params=self.filters
            ) as source,
        ):
            response = source.response
            if response.status_code in (400, 401, 403, 404):
                response.read()
                raise TailError(f"HTTP {response.status_code}: {_error_message(response)}")
            if response.status_code != 200:
                return f"HTTP {response.status_code}"
            self._connected = True
            resume = f", resuming after #{self.last_event_id}" if self.last_event_id else ""
            self._note(f"connected to {self.url}{resume}")
            for sse in source.iter_sse():
                if not sse.data:
                    continue
                try:
                    event = jsondepth.loads(sse.data)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "end":
                    return f"the server ended the stream: {clean(event.get('reason'), 40)}"
                lines = [sse.data] if self.raw_json else formatter.event(event)
                self.out.write("".join(line + "\n" for line in lines))
                self.out.flush()
                if sse.id:
                    self.last_event_id = sse.id
                self.printed += 1
                if self.max_events is not None and self.printed >= self.max_events:
                    raise _Done
        return "stream ended"


class _Done(Exception):
    pass


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return clean(response.text, 200) or response.reason_phrase
