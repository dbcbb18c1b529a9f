"""The listener without a server: payload parsing, handlers, reconnects and their backoff.

The connection is a small stand-in that replays notifications; the sleep seam
records the backoff instead of waiting. Against a real PostgreSQL, see
tests/integration/test_live_tail.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from pgactivity.listener import Listener, Notification, parse


def inline(org: str, seq: int, **fields: Any) -> str:
    """A payload as the trigger writes it (jsonb's text output: ", " and ": ")."""
    event = {"seq": seq, "data": {"message": "m"}, "type": "agent_progress", "organizationId": org, **fields}
    head = json.dumps({"org": org, "seq": seq, "at": 1764590000.25})
    return head[:-1] + ', "event": ' + json.dumps(event) + "}"


def test_an_inline_event_keeps_the_exact_text_and_its_routing_fields() -> None:
    payload = inline("org-a", 7, sessionId="s1", agentType="planner", category="c")
    note = parse(payload)
    assert note is not None
    assert note.event is not None
    assert (note.organization_id, note.seq) == ("org-a", 7)
    text = payload[payload.index(', "event": ') + len(', "event": ') : -1]
    assert note.event.json == text
    assert note.event.sse == b"id: 7\ndata: " + text.encode() + b"\n\n"
    assert (note.event.session_id, note.event.agent_type, note.event.category) == ("s1", "planner", "c")
    assert note.event.committed_at == 1764590000.25


@pytest.mark.parametrize(
    "org",
    ['org ", "event": {"x": 1}', "ü-org", "o" * 200, 'a\\", "event": '],
    ids=["event-key-in-org", "unicode", "200-chars", "escaped-quote"],
)
def test_the_organization_id_cannot_confuse_the_parser(org: str) -> None:
    note = parse(inline(org, 3))
    assert note is not None
    assert note.event is not None
    assert note.organization_id == org
    assert json.loads(note.event.json)["organizationId"] == org


def test_reference_and_more_notifications_have_no_event() -> None:
    assert parse('{"org": "o", "seq": 42}') == Notification("o", 42)
    assert parse('{"org": "o"}') == Notification("o", None)


def test_an_event_too_deep_for_python_is_left_to_the_log() -> None:
    deep = "[" * 3000 + "]" * 3000
    payload = '{"org": "o", "seq": 5, "at": 1.0, "event": {"seq": 5, "data": ' + deep + ', "organizationId": "o"}}'
    assert parse(payload) == Notification("o", 5)


@pytest.mark.parametrize(
    "payload",
    [
        "hello",
        "{}",
        '{"seq": 1}',
        '{"org": 5, "seq": 1}',
        '{"org": "o", "seq": "1"}',
        '{"org": "o", "seq": true}',
        '{"org": "o", "event": {"seq": 1}}',
        "[" * 5000,
    ],
)
def test_foreign_payloads_are_ignored(payload: str) -> None:
    assert parse(payload) is None


@pytest.mark.parametrize(
    "payload",
    [
        inline("o", 5).replace('"seq": 5, "data"', '"seq": 6, "data"'),
        inline("o", 5).replace('"organizationId": "o"', '"organizationId": "p"'),
        inline("o", 5, sessionId=7),
        '{"org": "o", "seq": 5, "event": {"seq": 5',
    ],
    ids=["other-seq", "other-org", "odd-session", "cut-short"],
)
def test_an_event_that_disagrees_with_its_header_is_left_to_the_log(payload: str) -> None:
    assert parse(payload) == Notification("o", 5)


# -- the loops ----------------------------------------------------------------------------


@dataclass
class Notify:
    payload: str


@dataclass
class FakeConnection:
    """Enough of psycopg's AsyncConnection for the listener: LISTEN, pings, one batch of notifies."""

    notes: list[str]
    fail_after: bool = True
    executed: list[str] = field(default_factory=list)

    async def __aenter__(self) -> FakeConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, query: str) -> None:
        self.executed.append(query)
        await asyncio.sleep(0)

    async def notifies(self, timeout: float) -> AsyncIterator[Notify]:
        await asyncio.sleep(0)
        notes, self.notes = self.notes, []
        for payload in notes:
            yield Notify(payload)
        if not notes and self.fail_after:
            raise psycopg.OperationalError("server closed the connection")


@dataclass
class Recorder:
    notes: list[Notification] = field(default_factory=list)
    resyncs: int = 0

    def on_notification(self, note: Notification) -> None:
        self.notes.append(note)

    def on_resync(self) -> None:
        self.resyncs += 1


def test_reconnects_with_growing_backoff_and_tells_handlers_to_resync() -> None:
    async def run() -> tuple[Recorder, Recorder, Listener, list[float]]:
        connections = [FakeConnection([inline("o", 1)]), FakeConnection(['{"org": "o", "seq": 2}'])]
        second_gone = asyncio.Event()
        attempts = 0
        sleeps: list[float] = []

        async def connect() -> Any:
            nonlocal attempts
            attempts += 1
            if attempts in (1, 2, 4):  # refused twice, then works, then refused once more
                raise OSError("connection refused")
            if attempts == 5:
                await second_gone.wait()
            if not connections:
                raise asyncio.CancelledError
            return connections.pop(0)

        async def sleep(delay: float) -> None:
            sleeps.append(delay)

        listener = Listener("unused", ping_seconds=0.01, sleep=sleep, connect=connect)
        first, second = Recorder(), Recorder()
        listener.subscribe(first)
        subscription = listener.subscribe(second)
        task = asyncio.create_task(listener.run())
        while attempts < 5:
            await asyncio.sleep(0)
        subscription.cancel()  # the second handler leaves before the second connection
        second_gone.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return first, second, listener, sleeps

    first, second, listener, sleeps = asyncio.run(run())
    assert [(n.organization_id, n.seq, n.event is not None) for n in first.notes] == [("o", 1, True), ("o", 2, False)]
    assert [(n.organization_id, n.seq) for n in second.notes] == [("o", 1)]
    assert first.resyncs == 2  # once per connection
    assert second.resyncs == 1
    assert listener.notifications == 2
    assert listener.reconnects == 2
    assert not listener.connected
    # Two refusals grow the delay (2^n, ±10 %); a connection resets it.
    assert 0.09 <= sleeps[0] <= 0.11
    assert 0.18 <= sleeps[1] <= 0.22
    assert 0.09 <= sleeps[2] <= 0.11  # after the first connection was lost
    assert 0.18 <= sleeps[3] <= 0.22  # refused once more


def test_pings_a_quiet_connection() -> None:
    conn = FakeConnection([], fail_after=False)

    async def connect() -> Any:
        return conn

    async def run() -> None:
        listener = Listener("unused", ping_seconds=0.01, connect=connect)
        task = asyncio.create_task(listener.run())
        while conn.executed.count("SELECT 1") < 2:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert conn.executed[0] == "LISTEN agent_activity"
