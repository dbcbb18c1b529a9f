"""The paced writer: one activity start per transaction, at a fixed schedule, from N connections.

Write i is due at t0 + i/rate and goes to organization i mod len(organizations);
connection w writes i = w, w + N, w + 2N, ... in turn (autocommit, so each
statement is its own transaction). A connection that falls behind writes without
sleeping until it has caught up, so "writes achieved" is what PostgreSQL and the
machine allowed. pgactivity's writer calls `agent_activity_start(...)`; the
typical app's runs the plain INSERT its users would write; the values are the same.

Each write carries a unique token `"~<n>~"` in `metadata`; the writer records the
time its commit returned (`time.monotonic()`, one clock for every process on
Linux), the clients the time each token reached them (see fleet.py).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import psycopg

import seed
from actors import Actor, commands, run_actor, uvloop_runner
from cluster import PGACTIVITY, TYPICAL

START_SQL = {
    PGACTIVITY: "SELECT agent_activity_start(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)",
    TYPICAL: (
        "INSERT INTO agent_activities (organization_id, agent_type, agent_name, session_id, category, input_data, "
        "metadata) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)"
    ),
}


APPLICATION_NAME = "bench-writer"  # how the coordinator finds the writer's backends (row d)


@dataclass
class WriterSpec:
    kind: str  # which START_SQL
    url: str
    organizations: list[str]
    rate: float
    duration: float
    token_base: int
    connections: int = 2


def token(n: int) -> str:
    return f"~{n}~"


def writer_main(conn: Connection, spec: WriterSpec) -> None:
    run_actor(conn, lambda: uvloop_runner().run(_write(conn, spec)))


async def _write(conn: Connection, spec: WriterSpec) -> None:
    total = int(spec.rate * spec.duration)
    commits = array("d", [math.nan]) * total
    orgs = array("H", [0]) * total
    statement = START_SQL[spec.kind]
    n_orgs = len(spec.organizations)
    dbs = [
        await psycopg.AsyncConnection.connect(spec.url, autocommit=True, application_name=APPLICATION_NAME)
        for _ in range(spec.connections)
    ]
    queue = await commands(conn)
    conn.send(("ready", None))
    await queue.get()  # "go"
    t0 = time.monotonic()
    errors: list[str] = []

    async def worker(w: int, db: psycopg.AsyncConnection[Any]) -> None:
        for i in range(w, total, spec.connections):
            delay = t0 + i / spec.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            org = spec.organizations[i % n_orgs]
            try:
                await db.execute(statement, (org, *seed.new_activity(org, i, token(spec.token_base + i))))
            except psycopg.Error as exc:
                errors.append(repr(exc))
                continue
            commits[i] = time.monotonic()
            orgs[i] = i % n_orgs

    await asyncio.gather(*(worker(w, db) for w, db in enumerate(dbs)))
    payload = {
        "token_base": spec.token_base,
        "commits": commits.tobytes(),
        "orgs": orgs.tobytes(),
        "t0": t0,
        "t1": time.monotonic(),
        "errors": errors[:5],
        "n_errors": len(errors),
    }
    conn.send(("done", payload))
    await queue.get()  # "close": the coordinator has read the CPU counters while these backends lived
    for db in dbs:
        await db.close()


@dataclass
class Written:
    """What a writer did: the commit time (NaN: failed) and organization index of each token."""

    token_base: int
    commits: array[float]
    orgs: array[int]
    t0: float
    t1: float
    n_errors: int

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Written:
        commits, orgs = array("d"), array("H")
        commits.frombytes(p["commits"])
        orgs.frombytes(p["orgs"])
        if p["n_errors"]:
            print(f"  writer errors: {p['n_errors']} e.g. {p['errors'][:2]}", file=sys.stderr)
        return cls(p["token_base"], commits, orgs, p["t0"], p["t1"], p["n_errors"])


class Writer:
    """The coordinator's handle on one writer process: start, go, wait for the end, close."""

    def __init__(self, spec: WriterSpec) -> None:
        self.spec = spec
        self.actor = Actor(writer_main, spec)
        self.actor.expect("ready", 60)

    @property
    def pid(self) -> int:
        return self.actor.pid

    def go(self) -> None:
        self.actor.send("go")

    def wait_done(self) -> Written:
        return Written.from_payload(self.actor.expect("done", self.spec.duration * 3 + 60))

    def close(self) -> None:
        """Lets the writer's backends exit: call after the last CPU reading."""
        self.actor.send("close")
        self.actor.join()
