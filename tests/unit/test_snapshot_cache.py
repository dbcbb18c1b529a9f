"""The shared snapshot cache without a database: who reads, who shares, and that a client never
spins on a read that has just finished.

The reads are stand-ins that return snapshots at the seqs a test gives them, when the test lets
them (an asyncio.Event per read).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from pgactivity.events import Filters, LogEvent
from pgactivity.snapshots import SnapshotCache
from pgactivity.store import Snapshot

ORG = "org-a"
ANY = Filters()


class Reads:
    """The cache's read function: the n-th read returns a snapshot at seqs[n] once gates[n] is set."""

    def __init__(self, *seqs: int) -> None:
        self.seqs = list(seqs)
        self.gates = [asyncio.Event() for _ in seqs]
        self.started = 0

    async def __call__(self, organization_id: str, filters: Filters) -> Snapshot:
        n = self.started
        self.started += 1
        await self.gates[n].wait()
        return Snapshot(organization_id, self.seqs[n], [json.dumps({"n": n})])


def seq_of(frame: LogEvent) -> int:
    assert json.loads(frame.json)["seq"] == frame.seq  # the encoded frame says the same
    return frame.seq


def test_clients_that_join_while_a_read_is_in_flight_share_it() -> None:
    async def run() -> tuple[list[int], int, int]:
        reads = Reads(5)
        cache = SnapshotCache(reads)
        clients = [asyncio.ensure_future(cache.get(ORG, ANY, 3, reset=False)) for _ in range(50)]
        await asyncio.sleep(0)
        reads.gates[0].set()
        frames = await asyncio.wait_for(asyncio.gather(*clients), 5)
        return [seq_of(f) for f in frames], cache.reads, cache.shared

    seqs, reads, shared = asyncio.run(run())
    assert seqs == [5] * 50
    assert (reads, shared) == (1, 49)


def test_a_read_older_than_the_client_is_read_again() -> None:
    async def run() -> tuple[int, int]:
        reads = Reads(5, 9)
        cache = SnapshotCache(reads)
        early = asyncio.ensure_future(cache.get(ORG, ANY, 4, reset=False))
        await asyncio.sleep(0)  # the read at 5 is in flight
        late = asyncio.ensure_future(cache.get(ORG, ANY, 8, reset=False))  # joined after event 8
        await asyncio.sleep(0)
        reads.gates[0].set()
        reads.gates[1].set()
        a, b = await asyncio.wait_for(asyncio.gather(early, late), 5)
        return seq_of(a), seq_of(b)

    assert asyncio.run(run()) == (5, 9)


@pytest.mark.timeout(20)
def test_a_client_that_finds_a_read_just_finished_but_too_old_reads_again_instead_of_spinning() -> None:
    """A read finishes; before its done callbacks run, a client that joined at a later seq looks:
    the finished read is still listed as in flight. Awaiting a finished future does not yield, so
    a client that went back to it would loop without ever letting the callbacks run: the whole
    event loop, every stream of the process, froze (seen in CI under a busy writer)."""

    async def run() -> int:
        reads = Reads(5, 9)
        reads.gates[1].set()
        cache = SnapshotCache(reads)
        first = asyncio.ensure_future(cache.get(ORG, ANY, 4, reset=False))
        await asyncio.sleep(0)  # the read at 5 is waiting at its gate
        reads.gates[0].set()  # the read's task is woken: it runs next, then `late`, then its callbacks
        late = asyncio.ensure_future(cache.get(ORG, ANY, 8, reset=False))
        frame = await asyncio.wait_for(late, 5)
        await first
        return seq_of(frame)

    assert asyncio.run(run()) == 9


def test_a_client_that_finds_a_read_just_finished_and_recent_enough_shares_it() -> None:
    """The same window, for a client the finished read is complete for: no read of its own."""

    async def run() -> tuple[int, int, int]:
        reads = Reads(5)
        cache = SnapshotCache(reads)
        first = asyncio.ensure_future(cache.get(ORG, ANY, 4, reset=False))
        await asyncio.sleep(0)
        reads.gates[0].set()
        late = asyncio.ensure_future(cache.get(ORG, ANY, 5, reset=False))
        frame = await asyncio.wait_for(late, 5)
        await first
        return seq_of(frame), cache.reads, cache.size

    seq, reads, size = asyncio.run(run())
    assert (seq, reads) == (5, 1)
    assert size == len(json.dumps({"n": 0}))  # cached once, though taken in twice
