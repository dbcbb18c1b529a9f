"""The baseline: what a team would typically write instead of pgactivity.

encode/broadcaster's Postgres backend (asyncpg, one LISTEN connection, one
channel per organization) and sse-starlette on uvicorn, the combination their
READMEs show. The database side is the usual one-liner: a plain
`AFTER INSERT OR UPDATE` trigger that NOTIFYs the whole row as JSON on the
organization's channel.

Choice of table: the typical app gets its own database holding the very same
`agent_activities` table as pgactivity (the `up` part of our first migration:
columns, checks and the state-rule trigger), plus the NOTIFY trigger below, and
none of pgactivity's event log. Writers run the same statements against both
databases, so the two servers see the same rows; pgactivity's writers do the
extra work of its commit-ordered log, the typical one does not.

What this baseline does not do, and pgactivity does (it is a baseline, not a
straw man, so these are left as users would write them): no snapshot or
Last-Event-ID replay (events sent while a client reconnects are lost), no
reconnect of the LISTEN connection, unbounded per-client queues, and a row over
8000 bytes of JSON makes the writer's transaction fail. broadcaster's
`subscribe` also loses a subscriber when two clients of a new organization
connect at the same moment (both see no listener yet); the benchmark connects
one client per organization first.

Run it alone with `python bench/typical_app.py --port 8001` and DATABASE_URL
set to a database where `install_schema` has run.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import psycopg
import uvicorn
from broadcaster import Broadcast
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

MIGRATIONS = Path(__file__).resolve().parents[1] / "sql" / "migrations"

NOTIFY_SQL = """
CREATE FUNCTION typical_notify_activity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('activity:' || NEW.organization_id, row_to_json(NEW)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER typical_notify_activity
    AFTER INSERT OR UPDATE ON agent_activities
    FOR EACH ROW EXECUTE FUNCTION typical_notify_activity();
"""


def channel(organization_id: str) -> str:
    return f"activity:{organization_id}"


def table_sql() -> str:
    """The `up` part of pgactivity's first migration: the same agent_activities table."""
    first = sorted(MIGRATIONS.glob("*_agent_activities.sql"))[0].read_text()
    up = re.split(r"^-- migrate:down", first, flags=re.MULTILINE)[0]
    return up.replace("-- migrate:up", "")


def install_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(table_sql().encode())
        conn.execute(NOTIFY_SQL.encode())


def create_app(database_url: str, secret: str) -> Starlette:
    broadcast = Broadcast(database_url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broadcast.connect()
        try:
            yield
        finally:
            await broadcast.disconnect()

    async def stream(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() or request.query_params.get("access_token", "")
        try:
            claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
            organization_id = str(claims["org_id"])
        except (jwt.PyJWTError, KeyError):
            return JSONResponse({"error": "unauthorized"}, status_code=401)

        async def events() -> AsyncIterator[dict[str, str]]:
            async with broadcast.subscribe(channel=channel(organization_id)) as subscriber:
                async for event in subscriber:  # type: ignore[union-attr]
                    if event is not None:
                        yield {"data": event.message}

        return EventSourceResponse(events())

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/api/activity/stream", stream), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app = create_app(os.environ["DATABASE_URL"], os.environ["BENCH_JWT_SECRET"])
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
