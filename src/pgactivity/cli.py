"""The `pgactivity` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pgactivity.errors import PgActivityError
from pgactivity.settings import Settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
    return parser


def _require_database(settings: Settings) -> str:
    if not settings.database_url:
        raise PgActivityError("DATABASE_URL is not set")
    return settings.database_url


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _configure_logging(settings.log_level)
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
    except PgActivityError as exc:
        print(f"pgactivity: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
