"""Events as they travel: read from the log, encoded once as SSE bytes.

The payload JSON is built by the database trigger (agent_activity_events.payload);
here it is only framed, once per event, never per client.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

HEARTBEAT = b": heartbeat\n\n"


@dataclass(frozen=True, slots=True)
class Filters:
    """Optional stream filters; None means "any"."""

    session_id: str | None = None
    agent_type: str | None = None
    category: str | None = None

    @property
    def empty(self) -> bool:
        return self.session_id is None and self.agent_type is None and self.category is None

    def matches(self, session_id: str | None, agent_type: str | None, category: str | None) -> bool:
        return (
            (self.session_id is None or self.session_id == session_id)
            and (self.agent_type is None or self.agent_type == agent_type)
            and (self.category is None or self.category == category)
        )


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One row of agent_activity_events, ready to send."""

    organization_id: str
    seq: int
    session_id: str | None
    agent_type: str | None
    category: str | None
    json: str
    sse: bytes
    committed_at: float | None = None  # epoch seconds of agent_activity_events.created_at, for the lag metric

    @classmethod
    def from_row(
        cls,
        organization_id: str,
        seq: int,
        session_id: str | None,
        agent_type: str | None,
        category: str | None,
        payload: str,
        committed_at: float | None = None,
    ) -> LogEvent:
        return cls(
            organization_id, seq, session_id, agent_type, category, payload, sse_frame(seq, payload), committed_at
        )


def sse_frame(seq: int, data: str) -> bytes:
    """`id: <seq>` and one `data:` line. jsonb's text output never contains a raw newline."""
    return b"id: %d\ndata: %s\n\n" % (seq, data.encode())


def snapshot_json(organization_id: str, seq: int, activities: list[str], *, reset: bool) -> str:
    """The first event of a new stream: the newest activities and the seq they are current at."""
    head = json.dumps(
        {"type": "snapshot", "seq": seq, "organizationId": organization_id, "reset": reset},
        separators=(", ", ": "),
    )
    return head[:-1] + ', "activities": [' + ", ".join(activities) + "]}"


@dataclass(frozen=True, slots=True)
class StreamEnd(LogEvent):
    """The last message of a stream the server ends, saying why (a hub close reason:
    token_expired, shutdown, slow_client). No event of the log: its SSE frame has no `id:`."""

    reason: str = ""


def end_event_json(reason: str) -> str:
    return json.dumps({"type": "end", "reason": reason}, separators=(", ", ": "))


def end_frame(reason: str) -> bytes:
    """`data:` only: the client's Last-Event-ID stays the last seq it received."""
    return b"data: %s\n\n" % end_event_json(reason).encode()


@functools.cache
def stream_end(reason: str) -> StreamEnd:
    return StreamEnd("", 0, None, None, None, end_event_json(reason), end_frame(reason), None, reason)
