"""Jittered exponential backoff for every loop that retries (River: 2^n with ±10 % jitter).

`Backoff` counts its own attempts (psycopg_pool's `AttemptWithBackoff` is the
model): `next()` after a failure, `reset()` after a success.
"""

from __future__ import annotations

import random


def backoff(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """The delay before retry number `attempt` (from 0): base * 2^attempt, capped, ±10 %."""
    delay = min(cap, base * (2 ** min(attempt, 64)))
    return float(delay * random.uniform(0.9, 1.1))


class Backoff:
    __slots__ = ("attempt", "base", "cap")

    def __init__(self, *, base: float = 0.1, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; each call doubles it (up to the cap)."""
        delay = backoff(self.attempt, base=self.base, cap=self.cap)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
