"""How a stream ends without a client leaving: the token's expiry timer, and the message that says why."""

from __future__ import annotations

import asyncio
import json
import time

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
    async def run() -> tuple[str | None, list[LogEvent | None] | None, int, int, str | None]:
        hub = Hub(max_bytes=1 << 20, max_events=100)
        now = time.time()
        sub = hub.subscribe("org-a", Filters(), expires_at=now + 10)
        other = hub.subscribe("org-a", Filters(), expires_at=now + 20)
        forever = hub.subscribe("org-a", Filters())  # a token without exp (the operator opted out)
        waiting = asyncio.ensure_future(sub.next_batch())
        await asyncio.sleep(0)
        assert hub.expire(now + 9.9) == 0  # not yet
        assert hub.expire(now + 10) == 1
        batch = await asyncio.wait_for(waiting, 5)  # the stream's writer wakes up and ends
        hub.publish([LogEvent.from_row("org-a", 1, None, None, None, "{}")])
        hub.heartbeat()
        return sub.closed, batch, hub.stats.slow_disconnects, hub.streams, other.closed or forever.closed

    closed, batch, slow, streams, others = asyncio.run(run())
    assert (closed, batch) == (CLOSED_EXPIRED, None)
    assert slow == 0  # not counted as a slow client
    assert streams == 2
    assert others is None
