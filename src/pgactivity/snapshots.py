"""Shared snapshots: clients of one organization and filter that join at the same seq share
one database read and one encoded frame. Knows nothing of SQL or HTTP.

A client subscribes to the hub first, which tells it `joined_seq`: the last seq
its organization's clients had been handed then. Every later event reaches it,
so any snapshot taken at a seq >= joined_seq is complete for it, whoever read
it and when. The cache keeps the newest snapshot per (organization, filters)
and the read in flight; a client takes the cached one when it is recent
enough, else joins the read in flight, else starts one, and checks the seq of
what it got (a read that began before the client's events were committed may
be older than joined_seq: it then reads again). A reconnect storm of thousands
of clients costs one read per organization and filter while the log stands
still, and one per new seq while it moves.

Entries are bounded: they expire `ttl` seconds after their read (a storm is
over by then; idle clients do not pin their snapshot), go with the last client
of their organization, and the oldest go first past `max_bytes` in all.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pgactivity.events import Filters, LogEvent, snapshot_json
from pgactivity.store import Snapshot

Read = Callable[[str, Filters], Awaitable[Snapshot]]
Key = tuple[str, Filters]


@dataclass
class _Entry:
    snapshot: Snapshot
    size: int
    expires: float
    frames: dict[bool, LogEvent] = field(default_factory=dict)

    def frame(self, reset: bool) -> LogEvent:
        """The snapshot event, encoded once per value of `reset`."""
        event = self.frames.get(reset)
        if event is None:
            snap = self.snapshot
            text = snapshot_json(snap.organization_id, snap.seq, snap.activities, reset=reset)
            event = LogEvent.from_row(snap.organization_id, snap.seq, None, None, None, text)
            self.frames[reset] = event
        return event


class SnapshotCache:
    def __init__(
        self,
        read: Read,
        *,
        ttl: float = 10.0,
        max_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._reading: dict[Key, asyncio.Future[_Entry]] = {}
        self._bytes = 0
        self.reads = 0  # database reads
        self.shared = 0  # snapshots handed out without a read of their own

    async def get(self, organization_id: str, filters: Filters, joined_seq: int, *, reset: bool) -> LogEvent:
        """A snapshot event complete for a client that subscribed at joined_seq."""
        key = (organization_id, filters)
        own_read = False
        while True:
            entry = self._fresh(key)
            if entry is not None and entry.snapshot.seq >= joined_seq:
                if not own_read:
                    self.shared += 1
                return entry.frame(reset)
            pending = self._reading.get(key)
            if pending is not None and pending.done():
                # A finished read stays listed until its done callback runs. Take it in now:
                # awaiting it would not yield, and a client it is too old for would go round
                # this loop for ever, with the callback (and every stream of the process) behind it.
                self._read_done(key, pending)
                continue
            if pending is None:
                pending = asyncio.ensure_future(self._load(key))
                self._reading[key] = pending
                pending.add_done_callback(functools.partial(self._read_done, key))
                own_read = True
            entry = await asyncio.shield(pending)
            if entry.snapshot.seq >= joined_seq:
                if not own_read:
                    self.shared += 1
                return entry.frame(reset)
            own_read = False  # older than this client: read again (or join a newer read)

    def discard(self, organization_id: str) -> None:
        """The organization's last client left: its snapshots go."""
        for key in [k for k in self._entries if k[0] == organization_id]:
            self._drop(key)

    @property
    def size(self) -> int:
        return self._bytes

    # -- internals -----------------------------------------------------------------

    async def _load(self, key: Key) -> _Entry:
        self.reads += 1
        snapshot = await self._read(*key)
        return _Entry(snapshot, snapshot.size, self._clock() + self.ttl)

    def _read_done(self, key: Key, done: asyncio.Future[_Entry]) -> None:
        if self._reading.get(key) is done:
            del self._reading[key]
        if done.cancelled() or done.exception() is not None:
            return  # each waiter sees the error; nothing is cached
        entry = done.result()
        current = self._entries.get(key)
        if current is entry or (current is not None and current.snapshot.seq > entry.snapshot.seq):
            return  # taken in already (get() found it finished), or older than the cached one
        self._drop(key)
        self._entries[key] = entry
        self._bytes += entry.size
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            self._drop(next(iter(self._entries)))

    def _fresh(self, key: Key) -> _Entry | None:
        now = self._clock()
        while self._entries:  # expire from the oldest (entries are in read order)
            oldest_key, oldest = next(iter(self._entries.items()))
            if oldest.expires > now:
                break
            self._drop(oldest_key)
        return self._entries.get(key)

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
