"""The hub without a database: bounded buffers, start_after, filters, heartbeats, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from pgactivity.events import HEARTBEAT, Filters, LogEvent
from pgactivity.hub import CLOSED_SHUTDOWN, CLOSED_SLOW, Hub, Subscription


def event(seq: int, org: str = "org-a", *, size: int = 10, session: str | None = None, **kw: str | None) -> LogEvent:
    payload = f'{{"seq": {seq}, "pad": "{"x" * size}"}}'
    return LogEvent.from_row(org, seq, session, kw.get("agent_type"), kw.get("category"), payload)


def drain(sub: Subscription) -> list[LogEvent | None]:
    """Everything the client's writer would send now (several next_batch calls)."""

    async def run() -> list[LogEvent | None]:
        out: list[LogEvent | None] = []
        while sub._queue:
            batch = await sub.next_batch()
            assert batch is not None
            out.extend(batch)
        return out

    return asyncio.run(run())


def seqs(items: list[LogEvent | None]) -> list[int]:
    return [e.seq for e in items if e is not None]


def test_fan_out_is_per_organization_and_shares_the_encoded_bytes() -> None:
    hub = Hub(max_bytes=1 << 20, max_events=1000)
    a1 = hub.subscribe("org-a", Filters())
    a2 = hub.subscribe("org-a", Filters())
    b = hub.subscribe("org-b", Filters())
    events = [event(1, "org-a"), event(1, "org-b"), event(2, "org-a"), event(1, "org-c")]
    hub.publish(events)
    got1, got2, got_b = drain(a1), drain(a2), drain(b)
    assert [(e.organization_id, e.seq) for e in got1 if e] == [("org-a", 1), ("org-a", 2)]
    assert [(e.organization_id, e.seq) for e in got_b if e] == [("org-b", 1)]
    # Encoded once: both clients hold the very same bytes object.
    assert all(x is not None and y is not None and x.sse is y.sse for x, y in zip(got1, got2, strict=True))
    assert hub.stats.delivered == 5


def test_filters_select_events_and_an_empty_filter_matches_all() -> None:
    hub = Hub(max_bytes=1 << 20, max_events=1000)
    by_session = hub.subscribe("org-a", Filters(session_id="s1"))
    by_type_and_category = hub.subscribe("org-a", Filters(agent_type="planner", category="c"))
    everything = hub.subscribe("org-a", Filters())
    hub.publish(
        [
            event(1, session="s1", agent_type="planner", category="c"),
            event(2, session="s2", agent_type="planner", category="c"),
            event(3, session="s1", agent_type="executor", category="c"),
            event(4, session=None, agent_type="planner", category=None),
        ]
    )
    assert seqs(drain(by_session)) == [1, 3]
    assert seqs(drain(by_type_and_category)) == [1, 2]
    assert seqs(drain(everything)) == [1, 2, 3, 4]
    assert Filters().empty
    assert not Filters(category="c").empty
    assert Filters(session_id="s").matches("s", None, None)
    assert not Filters(session_id="s").matches(None, None, None)


def test_start_after_drops_events_the_snapshot_covered() -> None:
    hub = Hub(max_bytes=1 << 20, max_events=1000)
    sub = hub.subscribe("org-a", Filters())
    # Live events arrive while the snapshot is read; the snapshot turns out to cover up to seq 3.
    hub.publish([event(s) for s in range(1, 6)])
    sub.start_after(3)
    assert len(sub._queue) == 2  # dropped from the buffer, not only skipped when sent
    assert sub._bytes == sum(len(event(s).sse) for s in (4, 5))
    # And a late event it already covered (an organization's tail behind the snapshot) is not queued.
    hub.publish([event(2), event(6)])
    assert seqs(drain(sub)) == [4, 5, 6]


def test_before_start_after_everything_is_kept() -> None:
    hub = Hub(max_bytes=1 << 20, max_events=1000)
    sub = hub.subscribe("org-a", Filters())
    hub.publish([event(1), event(2)])
    sub.start_after(0)
    assert seqs(drain(sub)) == [1, 2]


def test_a_client_that_does_not_drain_is_closed_when_its_backlog_is_over_the_bound() -> None:
    hub = Hub(max_bytes=10_000, max_events=1000)
    slow = hub.subscribe("org-a", Filters())
    fast = hub.subscribe("org-a", Filters())
    slow.start_after(0)
    fast.start_after(0)
    for seq in range(1, 40):
        hub.publish([event(seq, size=1000)])
        drain(fast)
    assert slow.closed == CLOSED_SLOW
    assert fast.closed is None
    assert hub.stats.slow_disconnects == 1
    assert not slow._queue
    assert slow._bytes == 0
    assert hub.client_counts() == {"org-a": 1}
    # The closed client's writer learns it at once and ends the stream.
    assert asyncio.run(slow.next_batch()) is None
    # What it held never exceeded the bound by more than one publish.
    assert slow.max_bytes == 10_000


def test_backlog_bound_in_events() -> None:
    hub = Hub(max_bytes=1 << 30, max_events=5)
    sub = hub.subscribe("org-a", Filters())
    for seq in range(1, 8):
        hub.publish([event(seq)])
    assert sub.closed == CLOSED_SLOW


def test_a_burst_bigger_than_the_buffer_does_not_close_a_client_that_keeps_up() -> None:
    """Regression: one log-tail batch larger than the buffer disconnected every client of the organization."""
    hub = Hub(max_bytes=10_000, max_events=1000)
    sub = hub.subscribe("org-a", Filters())
    sub.start_after(0)
    burst = [event(seq, size=1000) for seq in range(1, 51)]  # ~50 kB at once, 5x the buffer
    hub.publish(burst)
    assert sub.closed is None
    assert seqs(drain(sub)) == list(range(1, 51))
    hub.publish([event(51)])
    assert sub.closed is None


def test_next_batch_hands_the_writer_bounded_chunks_in_order() -> None:
    """The writer joins a batch into one write: a batch of the whole backlog was a copy of it per client."""
    hub = Hub(max_bytes=1 << 30, max_events=100_000)
    sub = hub.subscribe("org-a", Filters())
    sub.start_after(0)
    hub.publish([event(seq, size=10_000) for seq in range(1, 201)])  # ~2 MB

    async def batches() -> list[list[LogEvent | None]]:
        out = []
        while sub._queue:
            batch = await sub.next_batch()
            assert batch is not None
            out.append(batch)
        return out

    got = asyncio.run(batches())
    assert len(got) > 1
    assert all(sum(len(e.sse) for e in b if e) <= 512 * 1024 for b in got)
    assert seqs([e for b in got for e in b]) == list(range(1, 201))
    # A single event bigger than a chunk still goes out, alone.
    hub.publish([event(201, size=2_000_000)])
    (big,) = asyncio.run(batches())
    assert seqs(big) == [201]


def test_heartbeats_are_queued_for_every_client_and_bound_like_events() -> None:
    hub = Hub(max_bytes=len(HEARTBEAT) * 3, max_events=1000)
    a = hub.subscribe("org-a", Filters())
    b = hub.subscribe("org-b", Filters())
    hub.heartbeat()
    assert drain(a) == [None]
    assert drain(b) == [None]
    for _ in range(10):
        hub.heartbeat()
        drain(a)
    assert a.closed is None
    assert b.closed == CLOSED_SLOW  # never drained: dropped like any slow client
    assert hub.client_counts() == {"org-a": 1}


def test_next_batch_waits_for_an_event() -> None:
    async def run() -> list[LogEvent | None] | None:
        hub = Hub(max_bytes=1 << 20, max_events=1000)
        sub = hub.subscribe("org-a", Filters())
        sub.start_after(0)
        waiting = asyncio.create_task(sub.next_batch())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        hub.publish([event(1)])
        return await asyncio.wait_for(waiting, 5)

    assert seqs(asyncio.run(run()) or []) == [1]


def test_close_all_ends_every_stream_and_refuses_new_ones() -> None:
    async def run() -> None:
        hub = Hub(max_bytes=1 << 20, max_events=1000)
        subs = [hub.subscribe(f"org-{n % 3}", Filters()) for n in range(9)]
        waiting = [asyncio.create_task(s.next_batch()) for s in subs]
        await asyncio.sleep(0.01)
        hub.close_all()
        assert await asyncio.wait_for(asyncio.gather(*waiting), 5) == [None] * 9
        assert all(s.closed == CLOSED_SHUTDOWN for s in subs)
        late = hub.subscribe("org-0", Filters())
        assert late.closed == CLOSED_SHUTDOWN
        assert await late.next_batch() is None
        assert hub.client_counts() == {}

    asyncio.run(run())


def test_unsubscribe_forgets_the_organization_when_its_last_client_leaves() -> None:
    hub = Hub(max_bytes=1 << 20, max_events=1000)
    a1 = hub.subscribe("org-a", Filters())
    a2 = hub.subscribe("org-a", Filters())
    assert hub.has_clients("org-a")
    hub.unsubscribe(a1)
    assert hub.client_counts() == {"org-a": 1}
    hub.unsubscribe(a2)
    hub.unsubscribe(a2)
    assert not hub.has_clients("org-a")
    assert hub.organizations() == []


@pytest.mark.parametrize("filters", [Filters(), Filters(session_id="s")])
def test_closed_subscription_takes_nothing(filters: Filters) -> None:
    hub = Hub(max_bytes=1 << 20, max_events=1000)
    sub = hub.subscribe("org-a", filters)
    sub.close("test")
    assert not sub.offer(event(1, session="s"))
    assert not sub._queue
