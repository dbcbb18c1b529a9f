"""The `pgactivity` command."""

from __future__ import annotations

import argparse
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            from pgactivity.server import main_serve

            return main_serve(settings, args.host, args.port)
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
        if args.command == "purge":
            return _purge(_require_database(settings), args.older_than, max(1, args.batch_size))
    except PgActivityError as exc:
        print(f"pgactivity: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
