"""The writer's helper: a thin, typed wrapper over the SQL API.

It only writes rows through `agent_activity_*()`; the database turns every
write into an event and notifies the streamers. Nothing is broadcast here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Self

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgactivity.errors import translate

SQL_START = """
SELECT agent_activity_start(
    organization_id => %(organization_id)s, agent_type => %(agent_type)s,
    agent_name => %(agent_name)s, session_id => %(session_id)s, category => %(category)s,
    input_data => %(input_data)s, metadata => %(metadata)s)
"""
SQL_PROGRESS = "SELECT agent_activity_progress(id => %s::uuid, message => %s, progress => %s)"
SQL_COMPLETE = "SELECT agent_activity_complete(id => %s::uuid, output_data => %s, message => %s)"
SQL_FAIL = "SELECT agent_activity_fail(id => %s::uuid, error => %s)"

JSON = Mapping[str, Any] | list[Any] | None


def _json(value: JSON) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _start_params(
    organization_id: str,
    agent_type: str,
    agent_name: str | None,
    session_id: str | None,
    category: str | None,
    input_data: JSON,
    metadata: JSON,
) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "agent_type": agent_type,
        "agent_name": agent_name,
        "session_id": session_id,
        "category": category,
        "input_data": _json(input_data),
        "metadata": _json(metadata),
    }


class ActivityHandle:
    """What `activity()` yields: report progress, set the output, or finish early.

    With an AsyncActivityTracker the methods return awaitables.
    """

    def __init__(self, tracker: ActivityTracker | AsyncActivityTracker, activity_id: str) -> None:
        self._tracker = tracker
        self.id = activity_id
        self.output_data: JSON = None
        self.finished = False

    def progress(self, message: str | None = None, progress: int | None = None) -> Any:
        return self._tracker.track_progress(self.id, message=message, progress=progress)

    def complete(self, output_data: JSON = None, message: str | None = None) -> Any:
        """Complete now; leaving the block then changes nothing."""
        self.finished = True
        return self._tracker.track_complete(self.id, output_data=output_data, message=message)

    def fail(self, error: str) -> Any:
        """Fail now (e.g. a handled error); leaving the block then changes nothing."""
        self.finished = True
        return self._tracker.track_fail(self.id, error=error)


class ActivityTracker:
    """Synchronous helper. Pass a connection string or an existing psycopg pool."""

    def __init__(self, conninfo_or_pool: str | ConnectionPool, *, max_size: int = 4) -> None:
        if isinstance(conninfo_or_pool, ConnectionPool):
            self._pool = conninfo_or_pool
            self._owns_pool = False
        else:
            self._pool = ConnectionPool(
                conninfo_or_pool, min_size=1, max_size=max_size, kwargs={"autocommit": True}, open=True
            )
            self._owns_pool = True

    def close(self) -> None:
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, query: str, params: Any) -> Any:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(query, params).fetchone()
        except psycopg.Error as exc:
            typed = translate(exc)
            if typed is not None:
                raise typed from exc
            raise
        return row[0] if row else None

    def track_start(
        self,
        *,
        organization_id: str,
        agent_type: str,
        agent_name: str | None = None,
        session_id: str | None = None,
        category: str | None = None,
        input_data: JSON = None,
        metadata: JSON = None,
    ) -> str:
        params = _start_params(organization_id, agent_type, agent_name, session_id, category, input_data, metadata)
        return str(self._execute(SQL_START, params))

    def track_progress(self, activity_id: str, *, message: str | None = None, progress: int | None = None) -> None:
        self._execute(SQL_PROGRESS, (str(activity_id), message, progress))

    def track_complete(self, activity_id: str, *, output_data: JSON = None, message: str | None = None) -> None:
        self._execute(SQL_COMPLETE, (str(activity_id), _json(output_data), message))

    def track_fail(self, activity_id: str, *, error: str) -> None:
        self._execute(SQL_FAIL, (str(activity_id), error))

    @contextmanager
    def activity(self, **start: Any) -> Iterator[ActivityHandle]:
        """Start an activity; complete it on exit, or fail it with the exception's text."""
        handle = ActivityHandle(self, self.track_start(**start))
        try:
            yield handle
        except BaseException as exc:
            if not handle.finished:
                self.track_fail(handle.id, error=str(exc) or type(exc).__name__)
            raise
        if not handle.finished:
            self.track_complete(handle.id, output_data=handle.output_data)


class AsyncActivityTracker:
    """asyncio helper with the same methods as `ActivityTracker`, awaited."""

    def __init__(self, conninfo_or_pool: str | AsyncConnectionPool, *, max_size: int = 4) -> None:
        if isinstance(conninfo_or_pool, AsyncConnectionPool):
            self._pool = conninfo_or_pool
            self._owns_pool = False
        else:
            self._pool = AsyncConnectionPool(
                conninfo_or_pool, min_size=1, max_size=max_size, kwargs={"autocommit": True}, open=False
            )
            self._owns_pool = True
        self._opened = False
        self._open_lock = asyncio.Lock()

    async def open(self) -> None:
        async with self._open_lock:
            if self._owns_pool and not self._opened:
                await self._pool.open()
            self._opened = True

    async def close(self) -> None:
        if self._owns_pool and self._opened:
            await self._pool.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _execute(self, query: str, params: Any) -> Any:
        if not self._opened:
            await self.open()
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, params)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            typed = translate(exc)
            if typed is not None:
                raise typed from exc
            raise
        return row[0] if row else None

    async def track_start(
        self,
        *,
        organization_id: str,
        agent_type: str,
        agent_name: str | None = None,
        session_id: str | None = None,
        category: str | None = None,
        input_data: JSON = None,
        metadata: JSON = None,
    ) -> str:
        params = _start_params(organization_id, agent_type, agent_name, session_id, category, input_data, metadata)
        return str(await self._execute(SQL_START, params))

    async def track_progress(
        self, activity_id: str, *, message: str | None = None, progress: int | None = None
    ) -> None:
        await self._execute(SQL_PROGRESS, (str(activity_id), message, progress))

    async def track_complete(self, activity_id: str, *, output_data: JSON = None, message: str | None = None) -> None:
        await self._execute(SQL_COMPLETE, (str(activity_id), _json(output_data), message))

    async def track_fail(self, activity_id: str, *, error: str) -> None:
        await self._execute(SQL_FAIL, (str(activity_id), error))

    @asynccontextmanager
    async def activity(self, **start: Any) -> AsyncIterator[ActivityHandle]:
        handle = ActivityHandle(self, await self.track_start(**start))
        try:
            yield handle
        except BaseException as exc:
            if not handle.finished:
                await self.track_fail(handle.id, error=str(exc) or type(exc).__name__)
            raise
        if not handle.finished:
            await self.track_complete(handle.id, output_data=handle.output_data)
