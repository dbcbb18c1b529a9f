"""Broker mode's source of notifications: NATS, instead of a LISTEN connection per process.

The same interface as the listener (handlers get `Notification`s and
`on_resync()`), plus interest: `follow(org)` subscribes to the organization's
subject (awaited before the log tail reads its cursor, so that nothing
published afterwards is missed) and `unfollow(org)` ends it when the
organization's last client leaves. Only the events of organizations with
clients reach a process.

Handlers resync (read the log of everything they follow) whenever events may
have been missed: after a NATS reconnect, when the relay says so (a new relay
took over and catches up), and every `outage_poll_seconds` while NATS is
away, so that clients keep getting events, seconds late, through the log
alone: no process opens a LISTEN connection of its own, and writers never pay
for the outage.

`subscribe_all(handler, queue)` is for consumers of every organization (the
Slack consumer): a queue group, so each event wakes one process, not all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from pgactivity import broker
from pgactivity.listener import Handler, Notification, Subscription, parse

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class NatsFeed:
    def __init__(
        self,
        servers: list[str],
        subjects: broker.Subjects,
        *,
        outage_poll_seconds: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.servers = servers
        self.subjects = subjects
        self.outage_poll_seconds = outage_poll_seconds
        self._sleep = sleep
        self.nc: Client | None = None
        self.connected = False
        self.reconnects = 0
        self.messages = 0
        self._handlers: list[Handler] = []
        self._everything: list[tuple[Handler, str]] = []
        self._subs: dict[str, NatsSubscription | None] = {}  # None: wanted, not subscribed yet
        self._pending: set[asyncio.Future[None]] = set()  # unsubscribes on their way

    # -- handlers and interest -------------------------------------------------------

    def subscribe(self, handler: Handler) -> Subscription:
        """Notifications of the organizations followed, like Listener.subscribe."""
        self._handlers.append(handler)
        return Subscription(self._handlers, handler)

    def subscribe_all(self, handler: Handler, queue: str) -> None:
        """Notifications of every organization, shared with the other processes of `queue`."""
        self._everything.append((handler, queue))

    async def follow(self, organization_id: str) -> None:
        if organization_id in self._subs:
            return
        self._subs[organization_id] = None
        nc = self.nc
        if nc is None or not self.connected:
            return  # subscribed once connected; meanwhile the outage polls cover it
        try:
            await self._subscribe(nc, organization_id)
            await nc.flush(timeout=2)  # the server has the subscription: nothing published from now is missed
        except Exception as exc:  # NATS went away meanwhile: the reconnect resubscribes and resyncs
            logger.warning("cannot subscribe to NATS for %s yet: %s", organization_id, exc)

    def unfollow(self, organization_id: str) -> None:
        sub = self._subs.pop(organization_id, None)
        if sub is not None:
            task = asyncio.ensure_future(self._unsubscribe(sub))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    @property
    def followed(self) -> int:
        return len(self._subs)

    # -- the connection ----------------------------------------------------------------

    async def run(self) -> None:
        """Connect (for ever), keep the subscriptions, resync handlers when events may have been missed."""
        name = f"pgactivity {socket.gethostname()}:{os.getpid()}"
        connecting = asyncio.ensure_future(
            broker.connect(self.servers, name, on_disconnect=self._disconnected, on_reconnect=self._reconnected)
        )
        try:
            while not connecting.done():
                await asyncio.wait({connecting}, timeout=self.outage_poll_seconds)
                if not connecting.done():
                    self._resync()  # no NATS yet: the log is read instead
            self.nc = nc = connecting.result()
            await nc.subscribe(self.subjects.control, cb=self._on_control)
            for handler, queue in self._everything:
                await nc.subscribe(self.subjects.all_events, queue=queue, cb=self._wake_all(handler))
            for organization_id in list(self._subs):
                await self._subscribe(nc, organization_id)
            await nc.flush(timeout=5)
            self.connected = True
            logger.info("NATS connected", extra={"nats_state": "connected"})
            self._resync()
            while True:
                await self._sleep(self.outage_poll_seconds)
                if not self.connected:
                    self._resync()
        finally:
            connecting.cancel()
            if self.nc is not None:
                with contextlib.suppress(Exception):
                    await self.nc.close()

    async def publish(self, subject: str, data: bytes) -> None:
        """For the relay, on this process's connection. Raises when NATS cannot take it now."""
        if self.nc is None:
            raise ConnectionError("NATS not connected yet")
        await self.nc.publish(subject, data)

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload if self.nc is not None else 1024 * 1024

    async def _disconnected(self) -> None:
        if self.connected:
            logger.warning("NATS disconnected: reading the log every %.1fs meanwhile", self.outage_poll_seconds)
        self.connected = False

    async def _reconnected(self) -> None:
        # nats-py subscribes again by itself; what was published meanwhile is in the log.
        self.reconnects += 1
        self.connected = True
        logger.info("NATS reconnected", extra={"nats_state": "connected"})
        self._resync()

    def _resync(self) -> None:
        for handler in list(self._handlers):
            handler.on_resync()
        for handler, _queue in self._everything:
            handler.on_resync()

    # -- messages --------------------------------------------------------------------------

    async def _subscribe(self, nc: Client, organization_id: str) -> None:
        if self._subs.get(organization_id, False) is not None:
            return  # unfollowed meanwhile, or subscribed already
        subject = self.subjects.events(organization_id)

        async def on_event(msg: Msg) -> None:
            note = self._parse(msg)
            if note is not None and note.organization_id == organization_id:
                for handler in list(self._handlers):
                    handler.on_notification(note)

        sub = await nc.subscribe(subject, cb=on_event)
        if organization_id in self._subs:
            self._subs[organization_id] = sub
        else:
            await self._unsubscribe(sub)  # unfollowed while subscribing

    def _wake_all(self, handler: Handler) -> Callable[[Msg], Awaitable[None]]:
        async def on_event(msg: Msg) -> None:
            note = self._parse(msg)
            if note is not None:
                handler.on_notification(note)

        return on_event

    async def _on_control(self, msg: Msg) -> None:
        if msg.data.strip() == broker.RESYNC:
            self._resync()

    def _parse(self, msg: Msg) -> Notification | None:
        try:
            payload = msg.data.decode()
        except UnicodeDecodeError:
            return None
        note = parse(payload)
        if note is not None:
            self.messages += 1
        return note

    @staticmethod
    async def _unsubscribe(sub: NatsSubscription) -> None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
