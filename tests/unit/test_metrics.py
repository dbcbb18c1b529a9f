"""Metrics without a server: one registry per app, the lag histogram."""

from __future__ import annotations

from pgactivity.events import LogEvent
from pgactivity.metrics import Metrics


def test_each_app_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.snapshot_sent(reset=True)
    assert b'pgactivity_stream_snapshots_total{reset="true"} 1.0' in one.render()
    assert b'pgactivity_stream_snapshots_total{reset="true"} 0.0' in two.render()


def test_lag_is_observed_once_per_event_before_publishing() -> None:
    metrics = Metrics()
    published: list[list[LogEvent]] = []
    publish = metrics.instrument(published.append)
    events = [
        LogEvent.from_row("org", 1, None, "t", None, "{}", committed_at=100.0),
        LogEvent.from_row("org", 2, None, "t", None, "{}", committed_at=None),  # a snapshot: no commit time
    ]
    metrics.observe_lag(events[:1], now=100.25)
    publish(events)
    assert published == [events]
    text = metrics.render().decode()
    assert "pgactivity_event_lag_seconds_count 2.0" in text
    assert 'pgactivity_event_lag_seconds_bucket{le="0.25"} 1.0' in text
