"""Nothing lost, nothing repeated: snapshot→live and Last-Event-ID replay under concurrent writers."""

from __future__ import annotations

import random
import time
from typing import Any

import psycopg

from tests.e2e.conftest import ServerFactory
from tests.e2e.sse import SSEClient
from tests.e2e.writers import Writer, assert_exactly, last_seq

STREAM = "/api/activity/stream"


def _fold(client: SSEClient) -> dict[str, tuple[str, Any, Any]]:
    """Activity states from the snapshot plus the live events, as a UI would build them."""
    snapshot = client.events[0]
    assert snapshot.type == "snapshot"
    state: dict[str, tuple[str, Any, Any]] = {
        a["id"]: (a["status"], a["progress"], a["message"]) if a["status"] == "running" else (a["status"], None, None)
        for a in snapshot.data["activities"]
    }
    for event in client.live():
        activity = event.data["activityId"]
        data = event.data["data"]
        if event.type == "agent_started":
            assert activity not in state, f"seq {event.seq}: activity {activity} started twice (snapshot and live)"
            state[activity] = ("running", None, None)
        else:
            assert activity in state, f"seq {event.seq}: {event.type} of an activity the client never saw start"
            status, _progress, _message = state[activity]
            if event.type == "agent_progress":
                state[activity] = (status, data["progress"], data["message"])
            elif event.type == "agent_completed":
                state[activity] = ("completed", None, None)
            else:
                state[activity] = ("failed", None, None)
    return state


def test_snapshot_then_live_with_a_writer_running_has_no_gap_and_no_duplicate(
    server_factory: ServerFactory,
) -> None:
    # A snapshot big enough to hold every activity, so that snapshot + live can be checked against the table.
    server = server_factory(env={"PGACTIVITY_SNAPSHOT_LIMIT": "100000"})
    org = "org-live"
    writer = Writer(server.db_url, org, threads=3, pause=0.004).start()
    clients: list[SSEClient] = []
    rng = random.Random(7)
    try:
        for _ in range(10):
            time.sleep(rng.uniform(0.05, 0.25))
            clients.append(SSEClient(f"{server.base_url}{STREAM}", server.token(org)).start())
        for client in clients:
            client.wait_for(lambda c: len(c.events) >= 1, timeout=30)
        time.sleep(0.3)
    finally:
        writer.stop()
    try:
        final = last_seq(server.db_url, org)
        snapshot_seqs = [c.events[0].seq for c in clients]
        # The clients connected while the log was growing: their snapshots are from different moments.
        assert len(set(snapshot_seqs)) > 3, snapshot_seqs
        assert snapshot_seqs[-1] < final
        with psycopg.connect(server.db_url) as conn:
            rows = conn.execute(
                "SELECT id::text, status, progress, message FROM agent_activities WHERE organization_id = %s", (org,)
            ).fetchall()
        table = {r[0]: (r[1], r[2] if r[1] == "running" else None, r[3] if r[1] == "running" else None) for r in rows}
        for n, client in enumerate(clients):
            client.wait_for(lambda c: c.last_event_id == str(final), timeout=30)
            snap = client.events[0]
            assert snap.id == str(snap.seq)
            try:
                assert_exactly(client.seqs(), snap.seq + 1, final)
                assert _fold(client) == table
            except AssertionError as exc:
                raise AssertionError(f"client {n} (snapshot at seq {snap.seq}): {exc}") from None
    finally:
        for client in clients:
            client.stop()


def test_replay_is_exact_with_concurrent_writers_and_random_disconnects(server_factory: ServerFactory) -> None:
    server = server_factory()
    org = "org-replay"
    client = SSEClient(f"{server.base_url}{STREAM}", server.token(org), reconnect=True).start()
    # A quieter organization interleaved with org-replay's writes: its seqs must not leak in.
    other = Writer(server.db_url, "org-other", threads=1, pause=0.01)
    writer = Writer(server.db_url, org, threads=4, total=1600, pause=0.012)
    rng = random.Random(11)
    try:
        client.wait_for(lambda c: len(c.events) == 1)
        assert client.events[0].seq == 0
        other.start()
        writer.start()
        drops = 0
        deadline = time.monotonic() + 60
        while writer.transactions < 1600 and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.02, 0.2))
            client.drop()
            drops += 1
        writer.join()
        other.stop()
        final = last_seq(server.db_url, org)
        assert final == 1600
        # Two more drops after the writers stopped: the last replays end exactly at the tail.
        for _ in range(2):
            client.drop()
            time.sleep(0.1)
        client.wait_for(lambda c: c.last_event_id == str(final), timeout=30)
        time.sleep(0.3)
    finally:
        client.stop()
        writer.stop()
        other.stop()
    assert drops > 10
    assert client.connections > 10, f"only {client.connections} connections: the drops did not reconnect"
    assert len(client.snapshots()) == 1, "a reconnect with Last-Event-ID got a snapshot instead of a replay"
    assert all(e.data["organizationId"] == org for e in client.events)
    assert_exactly(client.seqs(), 1, final)
