"""The parts a running server is made of, wired once and shared by the handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection, pq
from psycopg_pool import AsyncConnectionPool

from pgactivity import retention
from pgactivity.auth import Authenticator
from pgactivity.events import Filters
from pgactivity.hub import Hub
from pgactivity.listener import Listener
from pgactivity.log_tail import LogTail
from pgactivity.memory import Trimmer
from pgactivity.metrics import Metrics
from pgactivity.settings import Settings
from pgactivity.snapshots import SnapshotCache
from pgactivity.sources import PostgresSource, Source
from pgactivity.store import Snapshot, Store

if TYPE_CHECKING:
    from pgactivity.slack import SlackActivityService
    from pgactivity.slack_consumer import SlackConsumer

logger = logging.getLogger(__name__)


async def check_pooled_connection(conn: AsyncConnection[Any]) -> None:
    """The pool's checkout check, without a round trip while the connection is quiet.

    A connection the server closed (restart, pg_terminate_backend, idle timeout)
    has input waiting: the FATAL message, or the end of the stream. Only then is
    it asked (`check_connection`, which raises, and the pool drops it). The log
    tail takes a connection for every NOTIFY; a round trip there was latency on
    every event.
    """
    if conn.pgconn.status == pq.ConnStatus.OK:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        if not poller.poll(0):
            return
    await AsyncConnectionPool.check_connection(conn)


async def use_generic_plans(conn: AsyncConnection[Any]) -> None:
    """For the log tail's connection: its one query is planned once, not at each NOTIFY.

    With the default plan_cache_mode PostgreSQL re-plans it for every execution
    (its custom plans look cheaper than the generic one, which is the same index
    scan); planning was more than half of each tail read.
    """
    await conn.execute("SET plan_cache_mode = force_generic_plan")


def make_source(settings: Settings, store: Store) -> Source:
    """LISTEN on PostgreSQL, or NATS when PGACTIVITY_NATS_URL is set (see sources.py)."""
    assert settings.database_url is not None
    if not settings.nats_servers:
        return PostgresSource(Listener(settings.database_url, ping_seconds=settings.listener_ping_seconds))
    from pgactivity.broker import Subjects
    from pgactivity.nats_feed import NatsFeed
    from pgactivity.relay import Relay
    from pgactivity.sources import NatsSource

    feed = NatsFeed(list(settings.nats_servers), Subjects(settings.nats_subject_prefix))
    relay = Relay(settings.database_url, feed, store, ping_seconds=settings.listener_ping_seconds)
    return NatsSource(feed, relay)


@dataclass
class Runtime:
    """database -> source (LISTEN, or NATS in broker mode) -> log tail -> hub -> client streams;
    snapshots beside the hub."""

    settings: Settings
    pool: AsyncConnectionPool
    store: Store
    hub: Hub
    source: Source
    tail: LogTail
    snapshots: SnapshotCache
    authenticator: Authenticator
    metrics: Metrics = field(default_factory=Metrics)
    trimmer: Trimmer = field(init=False)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    failed_tasks: dict[str, str] = field(default_factory=dict)
    hub_loop: asyncio.AbstractEventLoop | None = None
    slack: SlackConsumer | None = None
    slack_service: SlackActivityService | None = None  # replaces the slack-sdk one when set before start()

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        if not settings.database_url:
            raise ValueError("Runtime needs settings.database_url")
        pool = AsyncConnectionPool(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            kwargs={"autocommit": True, "application_name": "pgactivity"},
            timeout=10,
            check=check_pooled_connection,  # drop connections a restart killed
            open=False,
            name="pgactivity",
        )
        tail_pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=1,
            kwargs={"autocommit": True, "application_name": "pgactivity-tail"},
            configure=use_generic_plans,
            timeout=10,
            check=check_pooled_connection,
            open=False,
            name="pgactivity-tail",
        )
        store = Store(pool, tail_pool=tail_pool)
        hub = Hub(max_bytes=settings.client_buffer_bytes, max_events=settings.client_buffer_events)
        metrics = Metrics()
        source = make_source(settings, store)
        tail = LogTail(
            store,
            metrics.instrument(hub.publish),
            hub.has_clients,
            safety_seconds=settings.listener_ping_seconds,
            interest=source.interest,
        )
        source.subscribe(tail)

        async def read_snapshot(organization_id: str, filters: Filters) -> Snapshot:
            return await store.snapshot(
                organization_id, filters, settings.snapshot_limit, budget=settings.snapshot_max_bytes
            )

        snapshots = SnapshotCache(read_snapshot)
        return cls(settings, pool, store, hub, source, tail, snapshots, Authenticator(settings), metrics)

    def __post_init__(self) -> None:
        self.metrics.watch(self.hub, self.source, self.tail, self.snapshots)
        self.trimmer = Trimmer(lambda: self.hub.streams)

    def start_task(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """A named background task; if it dies, it is logged and /readyz fails."""

        async def watched() -> None:
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed_tasks[name] = repr(exc)
                logger.exception("background task %s died", name)

        self.tasks[name] = asyncio.create_task(watched(), name=f"pgactivity-{name}")

    async def expire_streams(self) -> None:
        """End the streams whose token has expired (Hub.expire), within a second of the expiry."""
        while True:
            await asyncio.sleep(1.0)
            self.hub.expire(time.time())

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            self.hub.heartbeat()

    async def purge_periodically(self) -> None:
        assert self.settings.database_url is not None
        assert self.settings.retention_days
        await retention.run_periodic(
            self.settings.database_url,
            self.settings.retention_days,
            self.settings.retention_interval_seconds,
            lambda result: self.metrics.purge_done(result.counts()),
        )

    async def start(self) -> None:
        self.hub_loop = asyncio.get_running_loop()
        await self.pool.open()
        if self.store.tail_pool is not self.pool:
            await self.store.tail_pool.open()
        for name, task in self.source.tasks().items():
            self.start_task(name, task)
        self.start_task("log-tail", self.tail.run)
        self.start_task("heartbeat", self.heartbeat)
        self.start_task("token-expiry", self.expire_streams)
        if self.settings.retention_days:
            self.start_task("retention", self.purge_periodically)
        self.start_slack()

    def start_slack(self) -> None:
        """The Slack consumer, woken by the process's source of notifications (see slack_consumer.py)."""
        settings = self.settings
        if not settings.slack_enabled:
            if settings.slack_bot_token or settings.slack_channel:
                logger.warning("Slack notifications off: set both SLACK_BOT_TOKEN and PGACTIVITY_SLACK_CHANNEL")
            return
        from pgactivity.slack_consumer import SlackCollector, SlackConsumer

        self.slack = SlackConsumer.from_settings(settings, service=self.slack_service)
        self.metrics.registry.register(SlackCollector(self.slack))
        self.source.subscribe_all(self.slack, queue="pgactivity-slack")
        self.start_task("slack", self.slack.run)

    async def stop(self) -> None:
        self.hub.close_all()
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.close()
        if self.store.tail_pool is not self.pool:
            await self.store.tail_pool.close()
