"""/readyz names what fails in fixed words; the exception text (hosts, users, ports) goes to the log only."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql as pgsql

from pgactivity.embedded import free_port
from tests.e2e.conftest import ServerFactory, ServerProcess
from tests.e2e.test_slack import slack, slack_env, wait_slack_status  # noqa: F401 (the fixture)
from tests.e2e.writers import wait_until
from tests.fake_slack import FakeSlack


def readyz(srv: ServerProcess) -> tuple[int, dict[str, Any], str]:
    response = httpx.get(f"{srv.base_url}/readyz", timeout=10)
    return response.status_code, response.json(), response.text


def with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def test_readyz_names_the_failing_checks_without_their_exception_text(
    server_factory: ServerFactory,
    slack: FakeSlack,  # noqa: F811
    db_url: str,
) -> None:
    role = f"pgactivity_readyz_{os.getpid()}"
    port = str(urlsplit(db_url).port)
    admin = psycopg.connect(db_url, autocommit=True)
    admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(pgsql.Identifier(role)))
    srv: ServerProcess | None = None
    try:
        srv = server_factory(env={**slack_env(slack), "DATABASE_URL": with_user(db_url, role)})
        wait_slack_status(srv, slack, "ok")
        # The database turns the server's role away: every connection fails with a FATAL naming it.
        admin.execute(pgsql.SQL("ALTER ROLE {} NOLOGIN").format(pgsql.Identifier(role)))
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))

        def failing() -> bool:
            status, body, _ = readyz(srv)
            return status == 503 and str(body["checks"].get("slack")).startswith("database unavailable")

        wait_until(failing, what="readyz failing")
        _, body, text = readyz(srv)
        assert body["checks"]["database"] == "unreachable"
        assert body["checks"]["listener"] == "disconnected"
        assert body["checks"]["slack"] == "database unavailable"
        for secret in (role, "127.0.0.1", port, "FATAL", "Error"):
            assert secret not in text, (secret, text)
        # The details are in the log, for the operator.
        wait_until(lambda: role in srv.log(), what="the exception text in the log")
    finally:
        if srv is not None:
            srv.stop()
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        admin.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(role)))
        admin.close()


def test_readyz_says_slack_is_unreachable_without_naming_its_address(server_factory: ServerFactory) -> None:
    closed = free_port()
    srv = server_factory(
        env={
            "SLACK_BOT_TOKEN": "xoxb-test",
            "PGACTIVITY_SLACK_CHANNEL": "C1",
            "PGACTIVITY_SLACK_BASE_URL": f"http://127.0.0.1:{closed}/api/",
            "PGACTIVITY_SLACK_TIMEOUT_SECONDS": "1",
        }
    )
    wait_until(
        lambda: str(readyz(srv)[1]["checks"].get("slack", "")).startswith("unreachable"), what="slack unreachable"
    )
    status, body, text = readyz(srv)
    assert status == 200  # Slack never makes the server unready
    assert body["checks"]["slack"] == "unreachable: cannot connect"
    assert str(closed) not in text
    assert "127.0.0.1" not in text
