"""From what was written and what each client received to latency, throughput and exactness.

Latency of a delivery is the time the client received the token minus the time
the writer's commit returned. Percentiles are over the events committed inside
the measurement window (after the warm-up, until the writer's end); delivered
events/s count the first receipt of each token by each client inside that window.
Every client must receive every event of its organization exactly once: a token
seen twice by one client is a duplicate, an expected one never seen is
undelivered. Clients of an organization are counted per client, whatever server
(port) they were connected to, so the same numbers hold for several servers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import psycopg

from fleet import Received
from writer import Written


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def analyze(
    written: Written, organizations: Sequence[str], received: Received, window: tuple[float, float]
) -> dict[str, float]:
    w0, w1 = window
    lo, hi = written.token_base, written.token_base + len(written.commits)
    commits = written.commits
    clients_of: dict[str, int] = {}
    for c in received.clients:
        clients_of[c.org] = clients_of.get(c.org, 0) + 1
    latencies: list[float] = []
    delivered = 0
    duplicates = 0
    silent = 0
    for c in received.clients:
        seen: set[int] = set()
        for tok, t in zip(c.toks, c.times, strict=True):
            if tok < lo or tok >= hi:
                continue  # another phase's token (or one in a snapshot)
            if tok in seen:
                duplicates += 1
                continue
            seen.add(tok)
            committed_at = commits[tok - lo]
            if committed_at != committed_at:  # NaN: that write failed, yet it arrived
                duplicates += 1
                continue
            if w0 <= t <= w1:
                delivered += 1
            if w0 <= committed_at <= w1:
                latencies.append(t - committed_at)
        silent += not seen
    expected = 0
    committed = 0
    for i, committed_at in enumerate(commits):
        if w0 <= committed_at <= w1:
            committed += 1
            expected += clients_of.get(organizations[written.orgs[i]], 0)
    latencies.sort()
    span = max(1e-9, w1 - w0)
    return {
        "writes_per_s": committed / span,
        "expected_per_s": expected / span,
        "delivered_per_s": delivered / span,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p90_ms": 1000 * percentile(latencies, 0.90),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * latencies[-1] if latencies else math.nan,
        "committed": committed,
        "undelivered": expected - len(latencies),
        "duplicates": duplicates,
        "silent_clients": silent,
        "lost_connections": received.lost,
        "clients": len(received.clients),
        "write_errors": written.n_errors,
    }


def tokens_written(url: str, lo: int, hi: int) -> dict[str, set[int]]:
    """The tokens in [lo, hi) that the database holds, per organization: what was committed,
    whoever wrote it (the paced writer, or a pgbench script that puts tokens in metadata)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT organization_id, substring(metadata->>'bench' from '~([0-9]+)~')::bigint AS tok "
            "FROM agent_activities WHERE metadata ? 'bench'"
        ).fetchall()
    out: dict[str, set[int]] = {}
    for org, tok in rows:
        if tok is not None and lo <= tok < hi:
            out.setdefault(org, set()).add(tok)
    return out


def exactly_once(expected: dict[str, set[int]], received: Received, lo: int, hi: int) -> dict[str, int]:
    """Did every client receive every committed token of its organization in [lo, hi) once,
    and nothing else in that range? Counted per client, whatever server it was connected to."""
    exact = missing = duplicates = foreign = 0
    for c in received.clients:
        mine = [t for t in c.toks if lo <= t < hi]
        got = set(mine)
        want = expected.get(c.org, set())
        client_missing = len(want - got)
        client_duplicates = len(mine) - len(got)
        client_foreign = len(got - want)
        missing += client_missing
        duplicates += client_duplicates
        foreign += client_foreign
        exact += client_missing == client_duplicates == client_foreign == 0
    return {
        "clients": len(received.clients),
        "exact_clients": exact,
        "missing": missing,
        "duplicates": duplicates,
        "not_committed_or_other_org": foreign,
    }
