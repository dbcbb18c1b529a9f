"""Connections that live outside the pool: the LISTEN connection, the Slack consumer's."""

from __future__ import annotations

from typing import Any

import psycopg


async def connect_dedicated(conninfo: str, application_name: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection whose death shows within seconds: TCP keepalives, not the
    kernel's two-hour default, notice a vanished server or a network blip."""
    return await psycopg.AsyncConnection.connect(
        conninfo,
        autocommit=True,
        application_name=application_name,
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )
