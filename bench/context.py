"""What every benchmark gets: the cluster, the CPU layout, the run's options, and the streaming
databases that rows a-e share (built once, on first use)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import seed
from cluster import PGACTIVITY, TYPICAL, Cluster
from machine import Layout, loadavg

SYSTEMS = (TYPICAL, PGACTIVITY)
STREAM_ORGS = [f"org-{i:02d}" for i in range(10)]
STREAM_PREFILL = 300  # activities per organization: a new client's snapshot is the default 100


@dataclass
class Context:
    cluster: Cluster
    layout: Layout
    quick: bool
    pg_bin: Path | None = None
    started: float = field(default_factory=time.monotonic)
    _stream: dict[str, str] = field(default_factory=dict)
    row_json_bytes: float = 0.0
    durable_all: bool = False

    def durability(self, durable: bool) -> str:
        """Switch the cluster to durable commits or not (see cluster.py); the conditions text."""
        self.cluster.set_durable(durable or self.durable_all)
        return self.cluster.durability()

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.0f}s load {loadavg()}] {message}", flush=True)

    def stream_database(self, kind: str) -> str:
        """pgactivity's or the typical app's database for the streaming rows: 10 organizations of
        300 activities each (the same rows in both)."""
        if kind not in self._stream:
            name = f"stream_{kind}"
            url = self.cluster.create(name, kind)
            self.row_json_bytes = seed.prefill(url, STREAM_ORGS, STREAM_PREFILL)
            self.say(
                f"{name}: {len(STREAM_ORGS)} organizations x {STREAM_PREFILL} activities, "
                f"{self.row_json_bytes:.0f} B each as JSON"
            )
            self._stream[kind] = url
        return self._stream[kind]

    def prefill_conditions(self) -> str:
        return (
            f"{len(STREAM_ORGS)} organizations of {STREAM_PREFILL} activities "
            f"(~{self.row_json_bytes / 1024:.1f} KB each as row_to_json; snapshot = the newest 100)"
        )
