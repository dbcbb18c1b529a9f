"""The log tail: each followed organization's events, in seq order, handed on exactly once.

It keeps a cursor per organization (the last seq handed on) and is fed
notifications (listener.py, or NATS in broker mode). An event that rode in
its notification and is the cursor's next one is handed on at once, with no
read of the log; one that rode in past a gap is held until the read of the
gap returns, so a large event costs one read, not one for every event that
came in behind it. Anything else is a reason to read the log after the cursor:
an event too large to ride along, a seq past the next one (a notification was
missed), a notification without seq, a reconnect, and the periodic safety read
(a notification that never came costs seconds, not the wait for the
organization's next write). A missed notification shows itself at the
organization's next event, as a gap, unless it was the last one: so the
safety read, every `safety_seconds`, reads the organizations whose cursor has
not moved since the check before, and a missed last event is found within two
`safety_seconds`. An organization whose events keep coming is not read again:
a process that has fallen behind (its notifications queued, not lost) would
otherwise read from the log what is already on its way. The log is the truth:
a read returns the events after the cursor whatever notifications said, and
events already handed on are skipped, so nothing is lost or repeated.

Reads of several organizations go in one query (the store bounds each
organization's share in events and bytes); an organization whose read
stopped at a bound is read again at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from pgactivity.backoff import Backoff
from pgactivity.events import LogEvent
from pgactivity.listener import Notification

logger = logging.getLogger(__name__)

Publish = Callable[[list[LogEvent]], None]
# Inline events kept per organization while a gap before them is read (more are read from the log).
HELD_PER_ORGANIZATION = 1000
# A hand-over this late (seconds after it was due) means the event loop is saturated.
BUSY_LATENESS = 0.002
Sleep = Callable[[float], Awaitable[None]]


class Interest(Protocol):
    """A source that delivers only what is asked for (NATS): told which organizations are followed."""

    async def follow(self, organization_id: str) -> None: ...

    def unfollow(self, organization_id: str) -> None: ...


class TailReader(Protocol):
    """The reads the tail needs (store.Store implements them)."""

    async def last_seqs(self, organization_ids: Sequence[str]) -> dict[str, int]: ...

    async def tail(self, cursors: dict[str, int]) -> tuple[list[LogEvent], set[str]]: ...


class LogTail:
    """A listener Handler (on_notification, on_resync) that publishes in seq order."""

    def __init__(
        self,
        reader: TailReader,
        publish: Publish,
        has_clients: Callable[[str], bool],
        *,
        safety_seconds: float = 5.0,
        batch_seconds: float = 0.002,
        max_batch_seconds: float = 0.025,
        sleep: Sleep = asyncio.sleep,
        interest: Interest | None = None,
    ) -> None:
        self.reader = reader
        self.interest = interest
        self.publish = publish
        self.has_clients = has_clients
        self.safety_seconds = safety_seconds
        self.batch_seconds = batch_seconds
        self.max_batch_seconds = max(batch_seconds, max_batch_seconds)
        self.interval = batch_seconds  # between hand-overs, now (see _emit)
        self._sleep = sleep
        self.cursors: dict[str, int] = {}
        self.inline = 0  # events handed on from their notification
        self.reads = 0  # reads of the log
        self._dirty: set[str] = set()
        self._reading: set[str] = set()
        self._held: dict[str, dict[int, LogEvent]] = {}  # inline events past a gap, by seq
        self._ready: list[LogEvent] = []  # handed on at the next flush (_emit)
        self._flush_scheduled = False
        self._last_flush = float("-inf")
        self._due = 0.0
        self._wake = asyncio.Event()
        self._follow_lock = asyncio.Lock()
        self._checked: dict[str, int] = {}  # the cursors at the last safety check

    # -- organizations -----------------------------------------------------------

    async def follow(self, organization_id: str) -> None:
        """Start following an organization from the end of its log. Await before a snapshot."""
        if organization_id in self.cursors:
            return
        async with self._follow_lock:
            if organization_id in self.cursors:
                return
            if self.interest is not None:  # subscribed before the cursor is read: nothing falls between
                await self.interest.follow(organization_id)
            seqs = await self.reader.last_seqs([organization_id])
            self.cursors.setdefault(organization_id, seqs.get(organization_id, 0))
        # A notification that came while the cursor was being read was not for us yet.
        self._mark((organization_id,))

    def _mark(self, organization_ids: Iterable[str]) -> None:
        self._dirty.update(organization_ids)
        self._wake.set()

    # -- Handler -------------------------------------------------------------------

    def on_notification(self, note: Notification) -> None:
        org = note.organization_id
        cursor = self.cursors.get(org)
        if cursor is None:
            return
        if note.seq is not None and note.seq <= cursor:
            return  # handed on already (a read got there first)
        if note.event is not None and note.seq is not None:
            if note.seq == cursor + 1:
                self.cursors[org] = cursor + 1
                self.inline += 1
                self._emit([note.event])
                self._drain(org)
                return
            # Past a gap (an event that is being read, or was missed): keep it for when the gap is
            # closed. The read in flight closes it, or the one this asks for.
            held = self._held.setdefault(org, {})
            if len(held) < HELD_PER_ORGANIZATION:
                held[note.seq] = note.event
            if org in self._reading:
                return
        self._mark((org,))

    def _emit(self, events: list[LogEvent]) -> None:
        """Hand events on in cursor order: at once when the last hand-over is `interval` old,
        else together with whatever else comes until then. A quiet stream pays no delay; under
        load each client gets one write per batch instead of one per event (a wake-up and a
        write per event per client is what saturates a server first: 1000 clients at 1000
        events/s are a million). The interval adapts to how busy the event loop is: it starts
        at `batch_seconds` and doubles, up to `max_batch_seconds`, while hand-overs run late
        (the loop has more to do than it can), and halves back while they run on time."""
        self._ready.extend(events)
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._due = max(now, self._last_flush + self.interval)
        if self._due > now:
            loop.call_later(self._due - now, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        now = asyncio.get_running_loop().time()
        late = now - self._due
        if late > BUSY_LATENESS:
            self.interval = min(self.max_batch_seconds, self.interval * 2)
        elif late < BUSY_LATENESS / 4:
            self.interval = max(self.batch_seconds, self.interval / 2)
        self._last_flush = now
        ready, self._ready = self._ready, []
        if ready:
            self.publish(ready)

    def _drain(self, org: str) -> None:
        """Hand on the held events that follow the cursor now."""
        held = self._held.get(org)
        if not held:
            return
        cursor = self.cursors[org]
        ready: list[LogEvent] = []
        while (event := held.pop(cursor + 1, None)) is not None:
            cursor += 1
            ready.append(event)
        for seq in [seq for seq in held if seq <= cursor]:
            del held[seq]
        if not held:
            del self._held[org]
        if ready:
            self.cursors[org] = cursor
            self.inline += len(ready)
            self._emit(ready)

    def on_resync(self) -> None:
        self._mark(self.cursors)

    # -- reads ---------------------------------------------------------------------

    def _stalled(self) -> list[str]:
        """The organizations whose cursor has not moved since the last check (one followed since
        then waits for the next): where a missed last notification would stop a stream. And
        those whose last client left, to be dropped."""
        stalled = [
            org for org, seq in self.cursors.items() if self._checked.get(org) == seq or not self.has_clients(org)
        ]
        self._checked = dict(self.cursors)
        return stalled

    async def run(self) -> None:
        """Read the log of organizations that need it, forever. Cancel to stop."""
        retry = Backoff()
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self.safety_seconds
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_check - loop.time())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            if loop.time() >= next_check:  # the periodic safety read, however busy the tail is
                next_check = loop.time() + self.safety_seconds
                self._mark(self._stalled())
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for org in dirty:
                if org in self.cursors and not self.has_clients(org):
                    del self.cursors[org]
                    self._held.pop(org, None)
                    if self.interest is not None:
                        self.interest.unfollow(org)
            todo = {org: self.cursors[org] for org in dirty if org in self.cursors}
            if not todo:
                continue
            self._reading = set(todo)
            try:
                self.reads += 1
                events, more = await self.reader.tail(todo)
            except Exception as exc:  # psycopg errors, the pool's PoolTimeout, OSError
                self._reading = set()
                delay = retry.next()
                logger.warning("cannot read the event log, retrying in %.1fs: %s", delay, exc)
                self._mark(todo)
                await self._sleep(delay)
                continue
            self._reading = set()
            retry.reset()
            fresh: list[LogEvent] = []
            for event in events:
                cursor = self.cursors.get(event.organization_id)
                # Skip what a notification handed on during the read (and organizations dropped meanwhile).
                if cursor is not None and event.seq == cursor + 1:
                    self.cursors[event.organization_id] = event.seq
                    fresh.append(event)
            if fresh:
                self._emit(fresh)
            for org in todo:
                if org in self.cursors:
                    self._drain(org)
                    if org in self._held:  # still a gap before what is held: read again
                        more.add(org)
            if more:  # a read stopped at its row or byte bound, or a gap remains: read on
                self._mark(more)
