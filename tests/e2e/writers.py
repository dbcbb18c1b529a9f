"""Writers for the e2e tests: real transactions through psycopg, in threads."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg


def last_seq(url: str, org: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce((SELECT last_seq FROM agent_activity_counters WHERE organization_id = %s), 0)", (org,)
        ).fetchone()
        return int(row[0]) if row else 0


def write_batch(url: str, org: str, count: int, *, payload_bytes: int = 0, **columns: str) -> int:
    """`count` activity starts in `count` transactions; returns the org's last seq afterwards."""
    input_data = json.dumps({"blob": "x" * payload_bytes}) if payload_bytes else None
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(count):
            conn.execute(
                "SELECT agent_activity_start(organization_id => %s, agent_type => %s, agent_name => %s, "
                "session_id => %s, category => %s, input_data => %s::jsonb)",
                (
                    org,
                    columns.get("agent_type", "executor"),
                    columns.get("agent_name"),
                    columns.get("session_id"),
                    columns.get("category"),
                    input_data,
                ),
            )
    return last_seq(url, org)


def write_batch_in_one_transaction(url: str, org: str, count: int, *, payload_bytes: int = 0) -> None:
    """`count` activity starts committed together: a burst of `count` events at once."""
    input_data = json.dumps({"blob": "z" * payload_bytes}) if payload_bytes else None
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO agent_activities (organization_id, agent_type, input_data) "
            "SELECT %s, 'burst', %s::jsonb FROM generate_series(1, %s)",
            (org, input_data, count),
        )


@dataclass
class Writer:
    """Threads writing a mix of starts, progress and completions to one organization
    until stop() (or `total` transactions have been made)."""

    url: str
    org: str
    threads: int = 1
    total: int | None = None
    pause: float = 0.0
    payload_bytes: int = 0
    transactions: int = 0
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Writer:
        for n in range(self.threads):
            thread = threading.Thread(target=self._work, args=(n,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def _claim(self) -> bool:
        with self._lock:
            if self._stop.is_set() or (self.total is not None and self.transactions >= self.total):
                return False
            self.transactions += 1
            return True

    def _work(self, n: int) -> None:
        rng = random.Random(n)
        input_data = json.dumps({"blob": "y" * self.payload_bytes}) if self.payload_bytes else None
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                running: list[str] = []
                while self._claim():
                    roll = rng.random()
                    if running and roll < 0.45:
                        conn.execute(
                            "SELECT agent_activity_progress(id => %s, message => %s, progress => %s)",
                            (running[-1], f"step {rng.randrange(1000)}", rng.randrange(100)),
                        )
                    elif running and roll < 0.6:
                        conn.execute("SELECT agent_activity_complete(id => %s)", (running.pop(),))
                    else:
                        row = conn.execute(
                            "SELECT agent_activity_start(organization_id => %s, agent_type => %s, "
                            "session_id => %s, input_data => %s::jsonb)",
                            (self.org, "executor", f"ses-{n}", input_data),
                        ).fetchone()
                        assert row is not None
                        running.append(str(row[0]))
                    if self.pause:
                        time.sleep(rng.uniform(0, self.pause))
        except BaseException as exc:
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._workers), "writer threads still running"
        assert not self.errors, f"writer failed: {self.errors[0]!r}"


def wait_until(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")


def assert_exactly(seqs: list[int], first: int, last: int) -> None:
    """Every seq in first..last exactly once, in order."""
    expected = list(range(first, last + 1))
    if seqs == expected:
        return
    seen: dict[int, int] = {}
    for s in seqs:
        seen[s] = seen.get(s, 0) + 1
    missing = [s for s in expected if s not in seen]
    dupes = [s for s, c in seen.items() if c > 1]
    extra = [s for s in seen if s < first or s > last]
    disorder = next((i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]), None)
    raise AssertionError(
        f"expected seqs {first}..{last} once each, in order; got {len(seqs)}: missing {missing[:20]} "
        f"(of {len(missing)}), duplicated {dupes[:20]}, out of range {extra[:20]}, first disorder at {disorder}"
    )
