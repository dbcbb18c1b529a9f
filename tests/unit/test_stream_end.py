"""How a stream ends without a client leaving: the token's expiry timer, and the message that says why."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from pgactivity import session
from pgactivity.events import Filters, LogEvent, StreamEnd, end_event_json, end_frame, stream_end
from pgactivity.hub import CLOSED_EXPIRED, CLOSED_SHUTDOWN, CLOSED_SLOW, Hub


def test_the_end_message_is_json_without_an_id_and_encoded_once() -> None:
    for reason in (CLOSED_EXPIRED, CLOSED_SHUTDOWN, CLOSED_SLOW):
        end = stream_end(reason)
        assert isinstance(end, StreamEnd)
        assert end is stream_end(reason)
        assert json.loads(end.json) == {"type": "end", "reason": reason}
        assert end.json == end_event_json(reason)
        assert end.sse == end_frame(reason) == b"data: " + end.json.encode() + b"\n\n"
        assert b"id:" not in end.sse  # the client's Last-Event-ID stays the last seq it got


def test_expiry_closes_the_subscription_and_takes_it_out_of_the_hub() -> None:
    async def run() -> tuple[str | None, list[LogEvent | None] | None, int]:
        hub = Hub(max_bytes=1 << 20, max_events=100)
        sub = hub.subscribe("org-a", Filters())
        session.Expiry(hub, sub, time.time() + 0.05)
        batch = await asyncio.wait_for(sub.next_batch(), 5)  # wakes up when the token expires
        hub.publish([LogEvent.from_row("org-a", 1, None, None, None, "{}")])
        hub.heartbeat()
        return sub.closed, batch, hub.stats.slow_disconnects

    closed, batch, slow = asyncio.run(run())
    assert (closed, batch) == (CLOSED_EXPIRED, None)
    assert slow == 0  # not counted as a slow client


def test_expiry_waits_for_the_wall_clock_when_the_loop_timer_is_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token is accepted until expires_at by the wall clock; a timer that fires first re-arms, so a
    reconnect right after the end is refused, not accepted once more."""
    start = time.time()
    calls = []

    def wall() -> float:
        calls.append(None)
        return start if len(calls) <= 2 else start + 10  # behind at first: the loop's clock ran ahead

    monkeypatch.setattr(session.time, "time", wall)

    async def run() -> str | None:
        hub = Hub(max_bytes=1 << 20, max_events=100)
        sub = hub.subscribe("org-a", Filters())
        session.Expiry(hub, sub, start + 0.02)
        await asyncio.wait_for(sub.next_batch(), 5)
        return sub.closed

    assert asyncio.run(run()) == CLOSED_EXPIRED
    assert len(calls) == 3  # armed, fired too early and re-armed, fired


def test_a_cancelled_expiry_does_nothing() -> None:
    async def run() -> str | None:
        hub = Hub(max_bytes=1 << 20, max_events=100)
        sub = hub.subscribe("org-a", Filters())
        session.Expiry(hub, sub, time.time() + 0.01).cancel()
        await asyncio.sleep(0.1)
        return sub.closed

    assert asyncio.run(run()) is None
