"""The log tail without a server: inline events, gaps, resyncs, failing reads and their backoff.

The reader is an in-memory log with the store's bounds; the sleep seam records
the backoff instead of waiting. Against a real PostgreSQL, see
tests/integration/test_live_tail.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pgactivity.events import LogEvent
from pgactivity.listener import Notification
from pgactivity.log_tail import LogTail


def event(org: str, seq: int) -> LogEvent:
    return LogEvent.from_row(org, seq, None, None, None, f'{{"seq": {seq}, "organizationId": "{org}"}}')


@dataclass
class MemoryLog:
    """The log as a dict of lists; reads stop after `limit` events per organization, like the store."""

    log: dict[str, list[LogEvent]] = field(default_factory=dict)
    limit: int = 3
    fail: int = 0  # the next reads that raise
    reads: list[dict[str, int]] = field(default_factory=list)

    def write(self, org: str, count: int = 1) -> list[LogEvent]:
        events = self.log.setdefault(org, [])
        new = [event(org, len(events) + i + 1) for i in range(count)]
        events.extend(new)
        return new

    async def last_seqs(self, organization_ids: Sequence[str]) -> dict[str, int]:
        return {org: len(self.log.get(org, [])) for org in organization_ids}

    async def tail(self, cursors: dict[str, int]) -> tuple[list[LogEvent], set[str]]:
        self.reads.append(dict(cursors))
        await asyncio.sleep(0)
        if self.fail:
            self.fail -= 1
            raise OSError("connection refused")
        out: list[LogEvent] = []
        more: set[str] = set()
        for org, after in cursors.items():
            page = self.log.get(org, [])[after : after + self.limit]
            out.extend(page)
            if len(page) == self.limit:
                more.add(org)
        return out, more


@dataclass
class Harness:
    log: MemoryLog = field(default_factory=MemoryLog)
    published: list[tuple[str, int]] = field(default_factory=list)
    clients: set[str] = field(default_factory=lambda: {"a", "b"})
    sleeps: list[float] = field(default_factory=list)
    tail: LogTail = field(init=False)

    def __post_init__(self) -> None:
        async def sleep(delay: float) -> None:
            self.sleeps.append(delay)
            await asyncio.sleep(0)

        self.tail = LogTail(
            self.log,
            lambda events: self.published.extend((e.organization_id, e.seq) for e in events),
            self.clients.__contains__,
            safety_seconds=3600,
            batch_seconds=0,  # every event at the next turn of the loop (see test_bursts_are_handed_on_together)
            sleep=sleep,
        )

    def notify(self, org: str, seq: int | None, *, inline: bool = True) -> None:
        ev = self.log.log[org][seq - 1] if inline and seq is not None else None
        self.tail.on_notification(Notification(org, seq, ev))

    async def settle(self) -> None:
        """Let the tail's task run until it waits for work again."""
        for _ in range(50):
            await asyncio.sleep(0)


def run(body: object) -> None:
    asyncio.run(body)  # type: ignore[arg-type]


def test_inline_events_are_published_without_a_read() -> None:
    async def body() -> None:
        h = Harness()
        h.log.write("a", 2)
        await h.tail.follow("a")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        reads_after_follow = len(h.log.reads)  # following costs one read: nothing new after the cursor
        h.log.write("a", 3)
        for seq in (3, 4, 5):
            h.notify("a", seq)
        await h.settle()
        assert h.published == [("a", 3), ("a", 4), ("a", 5)]
        assert len(h.log.reads) == reads_after_follow == 1
        assert h.tail.inline == 3
        task.cancel()

    run(body())


def test_a_missed_notification_is_repaired_from_the_log() -> None:
    async def body() -> None:
        h = Harness()
        await h.tail.follow("a")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.log.write("a", 4)
        h.notify("a", 1)
        # seq 2's NOTIFY is lost; 3 arrives inline: it is not the next one, so the log is read
        h.notify("a", 3)
        h.notify("a", 4)
        await h.settle()
        assert h.published == [("a", 1), ("a", 2), ("a", 3), ("a", 4)]
        task.cancel()

    run(body())


def test_large_events_gaps_and_more_notifications_cost_reads_in_batches() -> None:
    async def body() -> None:
        h = Harness()
        await h.tail.follow("a")
        await h.tail.follow("b")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.log.write("a", 7)
        h.log.write("b", 1)
        h.notify("a", 1, inline=False)  # too large to ride along
        h.notify("a", None)  # "and more" of a big transaction
        h.notify("b", 1, inline=False)
        await h.settle()
        assert [s for o, s in h.published if o == "a"] == list(range(1, 8))
        assert [s for o, s in h.published if o == "b"] == [1]
        # Both organizations in one read, then "a" again while its reads hit the bound.
        assert h.log.reads[1] == {"a": 0, "b": 0}
        assert [r for r in h.log.reads[2:]] == [{"a": 3}, {"a": 6}]
        task.cancel()

    run(body())


def test_events_a_notification_handed_on_during_a_read_are_not_repeated() -> None:
    async def body() -> None:
        h = Harness()
        h.log.limit = 100
        await h.tail.follow("a")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.log.write("a", 3)
        h.notify("a", 2, inline=False)  # a gap: a read starts from 0
        await asyncio.sleep(0)  # the read is in flight
        h.notify("a", 1)  # the next one, inline: handed on at once
        await h.settle()
        assert h.published == [("a", 1), ("a", 2), ("a", 3)]
        h.notify("a", 2)  # late duplicates are dropped
        h.notify("a", 3)
        await h.settle()
        assert h.published == [("a", 1), ("a", 2), ("a", 3)]
        task.cancel()

    run(body())


def test_resync_reads_every_followed_organization() -> None:
    async def body() -> None:
        h = Harness()
        await h.tail.follow("a")
        await h.tail.follow("b")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.log.write("a", 1)
        h.log.write("b", 2)  # their NOTIFYs went while the connection was down
        h.tail.on_resync()
        await h.settle()
        assert sorted(h.published) == [("a", 1), ("b", 1), ("b", 2)]
        task.cancel()

    run(body())


def test_failing_reads_back_off_and_lose_nothing() -> None:
    async def body() -> None:
        h = Harness()
        await h.tail.follow("a")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.log.write("a", 2)
        h.log.fail = 3
        h.notify("a", 1, inline=False)
        await h.settle()
        assert h.published == [("a", 1), ("a", 2)]
        assert len(h.sleeps) == 3
        assert 0.09 <= h.sleeps[0] <= 0.11
        assert 0.18 <= h.sleeps[1] <= 0.22
        assert 0.36 <= h.sleeps[2] <= 0.44
        task.cancel()

    run(body())


def test_organizations_without_clients_are_no_longer_followed() -> None:
    async def body() -> None:
        h = Harness()
        await h.tail.follow("a")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.clients.discard("a")
        h.log.write("a", 1)
        h.notify("a", 1, inline=False)
        await h.settle()
        assert h.published == []
        assert "a" not in h.tail.cursors
        h.log.write("a", 1)
        h.notify("a", 2)  # notifications of organizations not followed are ignored
        assert h.published == []
        task.cancel()

    run(body())


def test_the_periodic_safety_read_finds_what_no_notification_announced() -> None:
    async def body() -> None:
        h = Harness()
        h.tail.safety_seconds = 0.01
        await h.tail.follow("a")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.log.write("a", 2)  # and no notification at all
        while len(h.published) < 2:
            await asyncio.sleep(0.005)
        assert h.published == [("a", 1), ("a", 2)]
        task.cancel()

    run(body())


async def write_between_checks(h: Harness, org: str, checks: int, *, stop: Callable[[], bool] = lambda: False) -> None:
    """Write and notify one event of `org` after each of the tail's next `checks` safety checks,
    so its cursor moves between any two of them whatever the machine's timing."""
    seen = [0]
    stalled = h.tail._stalled

    def counted() -> list[str]:
        seen[0] += 1
        return stalled()

    h.tail._stalled = counted  # type: ignore[method-assign]
    for k in range(1, checks + 1):
        while seen[0] < k:
            await asyncio.sleep(0.001)
        if stop():
            break
        (written,) = h.log.write(org)
        h.notify(org, written.seq)
    h.tail._stalled = stalled  # type: ignore[method-assign]


def test_the_safety_read_leaves_alone_an_organization_whose_events_keep_coming() -> None:
    # A process that has fallen behind has its notifications queued, not lost: reading the log
    # of a busy organization at every check would fetch again what is already on its way. A
    # missed notification there shows itself at the next event, as a gap.
    async def body() -> None:
        h = Harness()
        h.tail.safety_seconds = 0.01
        await h.tail.follow("a")
        await h.tail.follow("b")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        reads_after_follow = len(h.log.reads)
        h.log.write("b")  # and no notification: b's cursor stands still, so a check reads it
        await write_between_checks(h, "a", 10)
        await h.settle()
        assert ("b", 1) in h.published
        read_orgs = [org for read in h.log.reads[reads_after_follow:] for org in read]
        assert "b" in read_orgs
        assert "a" not in read_orgs
        assert [seq for org, seq in h.published if org == "a"] == list(range(1, len(h.log.log["a"]) + 1))
        # Once a's events stop, its last one is checked for too: one missed is found.
        (missed,) = h.log.write("a")
        while ("a", missed.seq) not in h.published:
            await asyncio.sleep(0.005)
        task.cancel()

    run(body())


def test_an_organization_whose_clients_left_is_dropped_at_the_check_though_events_keep_coming() -> None:
    async def body() -> None:
        h = Harness()
        h.tail.safety_seconds = 0.01
        await h.tail.follow("a")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.clients.discard("a")
        await write_between_checks(h, "a", 3, stop=lambda: "a" not in h.tail.cursors)
        await h.settle()
        assert "a" not in h.tail.cursors
        task.cancel()

    run(body())


def test_bursts_are_handed_on_together_and_a_quiet_stream_at_once() -> None:
    async def body() -> None:
        h = Harness()
        published: list[list[int]] = []
        h.tail.publish = lambda events: published.append([e.seq for e in events])
        h.tail.batch_seconds = 0.05
        await h.tail.follow("a")
        task = asyncio.create_task(h.tail.run())
        await h.settle()
        h.log.write("a", 4)
        loop = asyncio.get_running_loop()
        started = loop.time()
        h.notify("a", 1)
        await h.settle()
        assert published == [[1]]  # the first after a quiet while: at once
        for seq in (2, 3, 4):
            h.notify("a", seq)
        await h.settle()
        assert published == [[1]]  # within batch_seconds of the last hand-over: they wait...
        while len(published) < 2:
            await asyncio.sleep(0.005)
        assert published == [[1], [2, 3, 4]]  # ...and go together
        assert loop.time() - started >= 0.05
        task.cancel()

    run(body())
