"""Prometheus metrics of one server, in a registry of its own (not the global one).

Most values already live in the parts that own them (the hub's client counts
and stats, the listener's reconnects); a collector reads them at scrape time,
so nothing on the hot path takes a lock or formats a label for them. What has
no owner elsewhere (the commit-to-send lag, snapshots, replays, purged rows)
is a prometheus-client metric here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgactivity.events import LogEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class HubStatsView(Protocol):
    delivered: int
    slow_disconnects: int


class HubView(Protocol):
    @property
    def stats(self) -> HubStatsView: ...

    def client_counts(self) -> dict[str, int]: ...


class SourceView(Protocol):
    def collect(self) -> Iterator[Metric]: ...


class TailView(Protocol):
    inline: int
    reads: int


class SnapshotsView(Protocol):
    reads: int
    shared: int

    @property
    def size(self) -> int: ...


Publish = Callable[[list[LogEvent]], None]


class _Collector(Collector):
    def __init__(self, hub: HubView, source: SourceView, tail: TailView, snapshots: SnapshotsView) -> None:
        self.hub = hub
        self.source = source
        self.tail = tail
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        clients = GaugeMetricFamily(
            "pgactivity_connected_clients", "Open streams, by organization", labels=["organization"]
        )
        for organization_id, count in sorted(self.hub.client_counts().items()):
            clients.add_metric([organization_id], count)
        yield clients
        yield CounterMetricFamily(
            "pgactivity_events_delivered", "Events handed to client streams", value=self.hub.stats.delivered
        )
        yield CounterMetricFamily(
            "pgactivity_slow_client_disconnects",
            "Clients disconnected because their buffer was full",
            value=self.hub.stats.slow_disconnects,
        )
        yield from self.source.collect()
        yield CounterMetricFamily(
            "pgactivity_events_inline",
            "Events handed on from their NOTIFY, without a read of the log",
            value=self.tail.inline,
        )
        yield CounterMetricFamily(
            "pgactivity_log_tail_reads",
            "Reads of the event log by the live tail (large events, gaps, reconnects, the periodic safety read)",
            value=self.tail.reads,
        )
        yield CounterMetricFamily(
            "pgactivity_snapshot_reads", "Snapshots read from the database", value=self.snapshots.reads
        )
        yield CounterMetricFamily(
            "pgactivity_snapshots_shared",
            "Snapshots sent to a new stream from another stream's read",
            value=self.snapshots.shared,
        )
        yield GaugeMetricFamily(
            "pgactivity_snapshot_cache_bytes", "Bytes of activities in cached snapshots", value=self.snapshots.size
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lag = Histogram(
            "pgactivity_event_lag_seconds",
            "From the event's commit (agent_activity_events.created_at) to its fan-out to clients",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.snapshots = Counter(
            "pgactivity_stream_snapshots",
            "Snapshots sent to new streams (reset: the client's Last-Event-ID could not be replayed)",
            ["reset"],
            registry=self.registry,
        )
        self.replays = Counter(
            "pgactivity_stream_replays",
            "Streams resumed from Last-Event-ID by replaying the log",
            registry=self.registry,
        )
        self.replayed_events = Counter(
            "pgactivity_stream_replayed_events", "Events sent by replays", registry=self.registry
        )
        self.purged = Counter(
            "pgactivity_purged_rows", "Rows deleted by the retention purge", ["table"], registry=self.registry
        )
        for reset in ("false", "true"):
            self.snapshots.labels(reset=reset)
        for table in ("agent_activities", "agent_activity_events"):
            self.purged.labels(table=table)
        self._watched = False

    def watch(self, hub: HubView, source: SourceView, tail: TailView, snapshots: SnapshotsView) -> None:
        """Expose the counters the parts keep themselves (once)."""
        if not self._watched:
            self.registry.register(_Collector(hub, source, tail, snapshots))
            self._watched = True

    def observe_lag(self, events: Iterable[LogEvent], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for event in events:
            if event.committed_at is not None:
                self.lag.observe(max(0.0, now - event.committed_at))

    def instrument(self, publish: Publish) -> Publish:
        """publish, observing each event's commit-to-fan-out lag first."""

        def publish_and_observe(events: list[LogEvent]) -> None:
            self.observe_lag(events)
            publish(events)

        return publish_and_observe

    def snapshot_sent(self, *, reset: bool) -> None:
        self.snapshots.labels(reset="true" if reset else "false").inc()

    def replay_done(self, events: int) -> None:
        self.replays.inc()
        self.replayed_events.inc(events)

    def purge_done(self, deleted: dict[str, int]) -> None:
        for table, count in deleted.items():
            self.purged.labels(table=table).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
