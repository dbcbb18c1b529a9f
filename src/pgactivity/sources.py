"""Where a process's notifications come from, chosen at start: PostgreSQL or NATS.

The log tail and the Slack consumer are handlers (listener.Handler); the hub
never sees any of this. Both sources have the same small interface:
`subscribe` (the organizations the tail follows), `subscribe_all` (every
organization, for consumers such as Slack), the background tasks to run, and
what they report in /readyz and /metrics.

- `PostgresSource`: the process's one LISTEN connection (listener.py). Every
  process that serves streams holds one, and PostgreSQL wakes every listening
  backend on every notifying commit.
- `NatsSource` (broker mode, PGACTIVITY_NATS_URL): the process takes part in
  the relay election (relay.py) and receives from NATS what it follows
  (nats_feed.py). Only the relay LISTENs, whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pgactivity.listener import Handler, Listener
from pgactivity.log_tail import Interest
from pgactivity.nats_feed import NatsFeed
from pgactivity.relay import Relay

Task = Callable[[], Awaitable[None]]


class Source(Protocol):
    interest: Interest | None

    def subscribe(self, handler: Handler) -> object: ...

    def subscribe_all(self, handler: Handler, queue: str) -> None: ...

    def tasks(self) -> dict[str, Task]: ...

    @property
    def live(self) -> bool:
        """Notifications are arriving (LISTEN or NATS connected); else events come from log reads only."""

    @property
    def ready(self) -> bool:
        """/readyz: this process can serve streams."""

    def checks(self) -> dict[str, str]: ...

    def collect(self) -> Iterator[Metric]: ...


def _listener_metrics(listener: Listener) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "pgactivity_listener_connected", "1 while the LISTEN connection is up", value=int(listener.connected)
    )
    yield CounterMetricFamily(
        "pgactivity_listener_reconnects", "Times the LISTEN connection was lost and reopened", value=listener.reconnects
    )
    yield CounterMetricFamily("pgactivity_listener_notifications", "NOTIFYs received", value=listener.notifications)


class PostgresSource:
    interest: Interest | None = None

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def subscribe(self, handler: Handler) -> object:
        return self.listener.subscribe(handler)

    def subscribe_all(self, handler: Handler, queue: str) -> None:
        self.listener.subscribe(handler)  # every notification reaches every handler anyway

    def tasks(self) -> dict[str, Task]:
        return {"listener": self.listener.run}

    @property
    def live(self) -> bool:
        return self.listener.connected

    @property
    def ready(self) -> bool:
        return self.listener.connected

    def checks(self) -> dict[str, str]:
        return {"listener": "connected" if self.listener.connected else "disconnected"}

    def collect(self) -> Iterator[Metric]:
        yield from _listener_metrics(self.listener)


class NatsSource:
    def __init__(self, feed: NatsFeed, relay: Relay) -> None:
        self.feed = feed
        self.relay = relay
        self.interest: Interest | None = feed

    def subscribe(self, handler: Handler) -> object:
        return self.feed.subscribe(handler)

    def subscribe_all(self, handler: Handler, queue: str) -> None:
        self.feed.subscribe_all(handler, queue)

    def tasks(self) -> dict[str, Task]:
        return {"nats": self.feed.run, "relay": self.relay.run}

    @property
    def live(self) -> bool:
        return self.feed.connected

    @property
    def ready(self) -> bool:
        # Without NATS, streams go on from log reads every PGACTIVITY_LISTENER_PING_SECONDS: taking
        # every process out of the load balancer for it would end them all.
        return True

    def checks(self) -> dict[str, str]:
        return {
            "nats": "connected" if self.feed.connected else "disconnected",
            "relay": "relay" if self.relay.active else "standby",
        }

    def collect(self) -> Iterator[Metric]:
        feed, relay = self.feed, self.relay
        yield GaugeMetricFamily("pgactivity_nats_connected", "1 while connected to NATS", value=int(feed.connected))
        yield CounterMetricFamily("pgactivity_nats_reconnects", "Times NATS was lost and found again", feed.reconnects)
        yield CounterMetricFamily("pgactivity_nats_messages", "Event messages received from NATS", feed.messages)
        yield GaugeMetricFamily(
            "pgactivity_nats_followed_organizations", "Organizations subscribed to on NATS", value=feed.followed
        )
        yield GaugeMetricFamily(
            "pgactivity_relay_active", "1 while this process is the relay (holds the lock, LISTENs)", relay.active
        )
        yield CounterMetricFamily("pgactivity_relay_published", "Messages the relay published", relay.published)
        yield CounterMetricFamily(
            "pgactivity_relay_dropped", "Messages the relay could not publish (subscribers read the log)", relay.dropped
        )
        yield CounterMetricFamily("pgactivity_relay_takeovers", "Times this process became the relay", relay.takeovers)
        yield from _listener_metrics(relay.listener)
