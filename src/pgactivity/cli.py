"""The `pgactivity` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from pgactivity import logs
from pgactivity.errors import PgActivityError
from pgactivity.settings import Settings


def _configure_logging(level: str, fmt: str = "text") -> None:
    logs.configure(level, fmt)


def _positive_days(raw: str) -> float:
    try:
        days = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not days > 0 or days == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of days, got {raw!r}")
    return days


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgactivity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP/SSE server (embedded PostgreSQL without DATABASE_URL)")
    serve.add_argument("--host", help="address to bind (PGACTIVITY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (PGACTIVITY_PORT, default 8000)")
    serve.add_argument("--demo", action="store_true", help="also run simulated agents")

    migrate = sub.add_parser("migrate", help="apply or roll back the SQL migrations (DATABASE_URL)")
    migrate.add_argument("action", nargs="?", choices=["up", "down", "status"], default="up")
    migrate.add_argument("--all", action="store_true", help="with down: roll back every migration")

    token = sub.add_parser("token", help="mint a JWT for an organization with PGACTIVITY_JWT_SECRET")
    token.add_argument("--org", required=True, help="organization id")
    token.add_argument("--sub", help="subject (user id)")
    token.add_argument("--ttl", type=float, default=3600, help="lifetime in seconds (default 3600)")

    tail = sub.add_parser("tail", help="follow the activity stream in the terminal, one line per event")
    tail.add_argument("--url", default="http://127.0.0.1:8000", help="server URL (default http://127.0.0.1:8000)")
    tail.add_argument("--token", help="JWT (default: PGACTIVITY_TOKEN, or minted for --org with PGACTIVITY_JWT_SECRET)")
    tail.add_argument("--org", help="organization to mint a token for with PGACTIVITY_JWT_SECRET")
    tail.add_argument("--session-id", help="only this session")
    tail.add_argument("--agent-type", help="only this agent type")
    tail.add_argument("--category", help="only this category")
    tail.add_argument("--last-event-id", type=int, help="replay the events after this seq instead of a snapshot")
    tail.add_argument("--json", action="store_true", help="print each event's JSON as received")
    tail.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="colors (default auto)")
    tail.add_argument("--count", type=int, help="exit after this many events")

    demo = sub.add_parser("demo", help="simulated agents writing activities through the SQL API (DATABASE_URL)")
    demo.add_argument("--orgs", default="demo,acme,globex", help="comma-separated organizations (default %(default)s)")
    demo.add_argument("--agents", type=int, default=3, help="simulated agents per organization (default 3)")
    demo.add_argument("--speed", type=float, default=1.0, help="time factor, 2 runs twice as fast (default 1)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: until interrupted)")
    demo.add_argument("--seed", type=int, help="random seed, for repeatable runs")

    purge = sub.add_parser("purge", help="delete finished activities and log events older than DAYS (DATABASE_URL)")
    purge.add_argument(
        "--older-than", type=_positive_days, required=True, metavar="DAYS", help="age in days (fractions allowed)"
    )
    purge.add_argument("--batch-size", type=int, default=5000, help="rows per DELETE (default 5000)")
    return parser


def _require_database(settings: Settings) -> str:
    if not settings.database_url:
        raise PgActivityError("DATABASE_URL is not set")
    return settings.database_url


def _purge(url: str, days: float, batch_size: int) -> int:
    import asyncio

    import psycopg

    from pgactivity import retention

    try:
        result = asyncio.run(retention.purge(url, days, batch_size=batch_size))
    except psycopg.Error as exc:
        print(f"pgactivity: purge failed: {exc}", file=sys.stderr)
        return 1
    if result.skipped:
        print("another process is purging right now; nothing done")
        return 0
    print(f"deleted {result.activities} activities and {result.events} events older than {days:g} days")
    return 0


def _tail(settings: Settings, args: argparse.Namespace) -> int:
    import logging

    from pgactivity.tail import Tail

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request, with the URL

    token = args.token or os.environ.get("PGACTIVITY_TOKEN")
    if token:
        fixed: str = token

        def token_source() -> str:
            return fixed
    elif args.org:
        from pgactivity.auth import mint_token

        mint_token(settings, args.org)  # fails now, not at the first connection, without a secret

        def token_source() -> str:
            return mint_token(settings, args.org, subject="pgactivity-tail", ttl=3600)
    else:
        raise PgActivityError("tail needs a token: --token, PGACTIVITY_TOKEN, or --org with PGACTIVITY_JWT_SECRET")
    filters = {
        name: value
        for name, value in (("sessionId", args.session_id), ("agentType", args.agent_type), ("category", args.category))
        if value
    }
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    tail = Tail(
        url=args.url,
        token=token_source,
        filters=filters,
        last_event_id=str(args.last_event_id) if args.last_event_id is not None else None,
        raw_json=args.json,
        color=color,
        max_events=args.count,
    )
    try:
        return tail.run()
    except KeyboardInterrupt:
        return 0


def _demo(url: str, args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from pgactivity.demo import run_demo

    organizations = [org.strip() for org in args.orgs.split(",") if org.strip()]
    if not organizations or args.agents < 1 or args.speed <= 0:
        raise PgActivityError("demo needs at least one organization, --agents >= 1 and --speed > 0")

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await run_demo(
            url,
            organizations=organizations,
            agents_per_organization=args.agents,
            speed=args.speed,
            duration=args.duration,
            seed=args.seed,
            stop=stop,
        )

    print(f"demo: simulated agents for {', '.join(organizations)}; Ctrl-C to stop", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve" and argv is None:
        from pgactivity.memory import reexec_with_glibc_malloc

        reexec_with_glibc_malloc()  # returns only when it does not apply
    try:
        settings = Settings.from_env()
        _configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            from pgactivity.server import main_serve

            return main_serve(settings, args.host, args.port, demo=args.demo)
        if args.command == "migrate":
            from pgactivity import migrations

            url = _require_database(settings)
            if args.action == "up":
                out = migrations.migrate_up(url)
            elif args.action == "down":
                out = migrations.migrate_down(url, all_=args.all)
            else:
                out = migrations.migrate_status(url)
            print(out, end="")
            return 0
        if args.command == "token":
            from pgactivity.auth import mint_token

            print(mint_token(settings, args.org, subject=args.sub, ttl=args.ttl))
            return 0
        if args.command == "tail":
            return _tail(settings, args)
        if args.command == "demo":
            if not settings.database_url:
                raise PgActivityError(
                    "demo needs DATABASE_URL (the one `pgactivity serve` prints), or run `pgactivity serve --demo`"
                )
            return _demo(settings.database_url, args)
        if args.command == "purge":
            return _purge(_require_database(settings), args.older_than, max(1, args.batch_size))
    except PgActivityError as exc:
        print(f"pgactivity: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
