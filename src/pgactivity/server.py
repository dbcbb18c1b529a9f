"""`pgactivity serve`: uvicorn around the app, with an embedded PostgreSQL when
no DATABASE_URL is given, and a shutdown that ends the endless streams."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

import psycopg
import uvicorn
from litestar import Litestar

from pgactivity import memory, migrations
from pgactivity.api.stream import RawSend
from pgactivity.app import create_app
from pgactivity.auth import mint_token, new_secret
from pgactivity.embedded import EmbeddedPostgres
from pgactivity.errors import ConfigurationError
from pgactivity.runtime import Runtime
from pgactivity.settings import Settings

logger = logging.getLogger(__name__)

DEV_ORGANIZATION = "demo"


class _Server(uvicorn.Server):
    """uvicorn waits for open responses before shutting down; SSE responses never
    end on their own, so a shutdown signal first ends every stream."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self._runtime = runtime

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = self._runtime.hub_loop
        if loop is not None:
            loop.call_soon_threadsafe(self._runtime.hub.close_all)
        super().handle_exit(sig, frame)


def http_protocol(send_timeout_seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, with TCP_USER_TIMEOUT set on every accepted connection.

    A client that stops reading (or vanishes without a FIN) leaves the server's
    last write pending for ever: ASGI offers no way to abort the transport, and
    the kernel otherwise keeps retrying for about 15 minutes, or indefinitely
    while the peer advertises a zero window. With TCP_USER_TIMEOUT the kernel
    aborts the connection once sent data has gone unacknowledged that long;
    uvicorn then sees the connection lost and the stream ends.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None or send_timeout_seconds <= 0:
        return AutoHTTPProtocol
    milliseconds = int(send_timeout_seconds * 1000)

    def connection_made(self: asyncio.Protocol, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, milliseconds)
            except OSError as exc:
                logger.debug("cannot set TCP_USER_TIMEOUT: %s", exc)
        AutoHTTPProtocol.connection_made(self, transport)

    return type("SendTimeoutHTTPProtocol", (AutoHTTPProtocol,), {"connection_made": connection_made})


def _persistent_secret(data_dir: Path) -> str:
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def _check_schema(url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT to_regclass('agent_activity_events') IS NOT NULL").fetchone()
    except psycopg.OperationalError as exc:
        raise ConfigurationError(f"cannot connect to DATABASE_URL: {exc}") from None
    if not row or not row[0]:
        raise ConfigurationError("the database has no pgactivity schema: run `pgactivity migrate up` first")


def start_embedded(settings: Settings, embedded: EmbeddedPostgres) -> Settings:
    """Start (or reuse) the development PostgreSQL, migrate it, and make up a secret."""
    print(f"Starting embedded PostgreSQL in {embedded.data_dir} ...", flush=True)
    embedded.start()
    url = embedded.url("pgactivity")
    migrations.migrate_up(url)
    secret = settings.jwt_secret or _persistent_secret(settings.data_dir)
    return settings.with_(database_url=url, jwt_secret=secret)


class Interrupted(Exception):
    """SIGTERM before uvicorn runs (and handles it): unwind, so that what was started is stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def add_demo(app: Litestar, runtime: Runtime) -> None:
    """`serve --demo`: simulated agents as a named background task of the server, writing into its database."""
    from pgactivity.demo import DEFAULT_ORGANIZATIONS, run_demo

    url = runtime.settings.database_url
    assert url is not None
    # on_startup hooks run once the lifespan (and so the runtime) has started; the runtime cancels the task on stop.
    app.on_startup.append(lambda: runtime.start_task("demo", lambda: run_demo(url)))
    logger.info("demo: simulated agents write activities for the organizations %s", ", ".join(DEFAULT_ORGANIZATIONS))


def serve(settings: Settings, *, host: str | None = None, port: int | None = None, demo: bool = False) -> int:
    host = host or settings.host
    port = port if port is not None else settings.port
    embedded: EmbeddedPostgres | None = None
    started_here = False
    # Until uvicorn takes the signals over, SIGTERM (like Ctrl-C) unwinds through the finally
    # below: a PostgreSQL that was still starting is stopped, not left running for good.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if settings.database_url is None:
            embedded = EmbeddedPostgres(settings.data_dir / "postgres", port=settings.embedded_port)
            started_here = embedded.running_port() is None  # else another serve's: leave it running
            settings = start_embedded(settings, embedded)
            token = mint_token(settings, DEV_ORGANIZATION, subject="developer", ttl=30 * 86400)
            print(
                "\npgactivity development server (embedded PostgreSQL, do not use in production)\n"
                f"  DATABASE_URL={settings.database_url}\n"
                f"  dashboard:  http://{host}:{port}/?access_token={token}\n"
                f"  stream:     curl -N -H 'Authorization: Bearer {token}' http://{host}:{port}/api/activity/stream\n"
                f"  token:      {token}  (organization {DEV_ORGANIZATION!r}, valid 30 days)\n",
                flush=True,
            )
        else:
            if not settings.jwt_configured:
                raise ConfigurationError(
                    "DATABASE_URL is set but no JWT key is configured: set PGACTIVITY_JWT_SECRET "
                    "(HS256) or PGACTIVITY_JWT_PUBLIC_KEY (RS256/ES256). Refusing to serve without auth."
                )
            assert settings.database_url is not None
            _check_schema(settings.database_url)

        runtime = Runtime.build(settings)
        app = create_app(settings, runtime)
        if demo:
            add_demo(app, runtime)
        # An on_startup hook runs after the lifespan, so the runtime's pools are frozen too. The
        # lambda, not settle_gc itself: Litestar passes the app to a hook that takes a parameter.
        app.on_startup.append(lambda: memory.settle_gc())
        config = uvicorn.Config(
            RawSend(app),
            host=host,
            port=port,
            access_log=False,  # access logs would carry ?access_token= query strings
            log_config=None,
            lifespan="on",
            http=http_protocol(settings.client_send_timeout_seconds),
            timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds)),
            proxy_headers=True,
        )
        server = _Server(config, runtime)
        try:
            server.run()
        except (Interrupted, KeyboardInterrupt):
            # uvicorn re-raises the signal it handled once it is done: a requested stop, exit 0
            # (the embedded PostgreSQL below is stopped). Before it ran: a stop while starting.
            if not server.started:
                raise
        return 0 if server.started else 1
    finally:
        if embedded is not None and started_here:
            embedded.stop()


def main_serve(settings: Settings, host: str | None, port: int | None, demo: bool = False) -> int:
    try:
        return serve(settings, host=host, port=port, demo=demo)
    except ConfigurationError as exc:
        print(f"pgactivity: {exc}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(f"pgactivity: stopped by {signal.Signals(signum).name} while starting", file=sys.stderr)
        return 128 + signum
