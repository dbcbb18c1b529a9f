"""Broker mode's common ground: NATS subjects, the message format, the connection.

With PGACTIVITY_NATS_URL set, one process per database is the relay
(relay.py): it LISTENs on PostgreSQL and publishes every event to NATS; every
process, the relay's included, receives the events of the organizations it has
clients for from NATS (nats_feed.py). The message is exactly the NOTIFY
payload (listener.parse reads both), on one subject per organization:

    <prefix>.events.<organization token>    one organization's events, in seq order
    <prefix>.control                        {"resync": true}: read the log (a new relay)

An organization id can hold any character; its token keeps ASCII letters,
digits and `-` and writes every other byte as `_xx` (hex), so any id is one
valid subject token and two ids never share one. Subscribers check seq
continuity exactly as with LISTEN and read the log on any gap: NATS is a
faster wake-up, the log stays the truth.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client

logger = logging.getLogger(__name__)

_KEPT = frozenset((string.ascii_letters + string.digits + "-").encode())
RESYNC = b'{"resync": true}'


def organization_token(organization_id: str) -> str:
    """The organization's subject token: reversible, and never '.', '*', '>' or blank."""
    return "".join(chr(b) if b in _KEPT else f"_{b:02x}" for b in organization_id.encode())


def organization_from_token(token: str) -> str:
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "_":
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(token[i]))
            i += 1
    return out.decode()


@dataclass(frozen=True, slots=True)
class Subjects:
    prefix: str = "pgactivity"

    def events(self, organization_id: str) -> str:
        return f"{self.prefix}.events.{organization_token(organization_id)}"

    @property
    def all_events(self) -> str:
        return f"{self.prefix}.events.*"

    @property
    def control(self) -> str:
        return f"{self.prefix}.control"


Callback = Callable[[], Awaitable[None]]


async def connect(servers: list[str], name: str, *, on_disconnect: Callback, on_reconnect: Callback) -> Client:
    """A NATS connection that reconnects for ever, and notices a dead server within seconds."""

    async def on_error(exc: Exception) -> None:
        logger.warning("NATS: %s", exc or type(exc).__name__)

    return await nats.connect(
        servers=servers,
        name=name,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=2,
        ping_interval=2,
        max_outstanding_pings=2,
    )
