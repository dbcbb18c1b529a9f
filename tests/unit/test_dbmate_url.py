"""migrations.dbmate_url: any libpq connection string to the URL dbmate (Go, lib/pq) understands.

Every input here names its sslmode, so no connection is made. A few tests hand
the result to the real dbmate binary, pointed at addresses where nothing
listens, and read where dbmate tried to connect.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from pgactivity.errors import ConfigurationError
from pgactivity.migrations import dbmate_binary, dbmate_url

SPECIAL = "p@ss:w/rd?#%&=+ é'\""


def parts(url: str) -> tuple[str, str | None, str | None, str, int | None, str, dict[str, list[str]]]:
    """scheme, user, password, host, port, dbname (all decoded) and the query of a dbmate URL."""
    split = urlsplit(url)
    user = unquote(split.username) if split.username is not None else None
    password = unquote(split.password) if split.password is not None else None
    return (
        split.scheme,
        user,
        password,
        split.hostname or "",
        split.port,
        unquote(split.path.lstrip("/")),
        parse_qs(split.query),
    )


def dbmate_connect_error(url: str) -> str:
    """Run dbmate against `url` (where nothing listens) and return its error."""
    proc = subprocess.run(
        [dbmate_binary(), "--url", url, "--no-dump-schema", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    return proc.stderr + proc.stdout


def test_url_with_sslmode() -> None:
    url = dbmate_url("postgresql://postgres@127.0.0.1:5432/app?sslmode=disable")
    assert url == "postgres://postgres@127.0.0.1:5432/app?sslmode=disable"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_sslmode_is_kept(mode: str) -> None:
    assert parts(dbmate_url(f"postgresql://db.example/app?sslmode={mode}"))[6] == {"sslmode": [mode]}


def test_url_without_port_or_user() -> None:
    scheme, user, password, host, port, dbname, query = parts(dbmate_url("postgresql://db.example/app?sslmode=require"))
    assert (scheme, user, password, host, port, dbname) == ("postgres", None, None, "db.example", None, "app")
    assert query == {"sslmode": ["require"]}


def test_key_value_conninfo() -> None:
    url = dbmate_url("host=db.example port=6543 dbname=app user=writer password=secret sslmode=require")
    assert url == "postgres://writer:secret@db.example:6543/app?sslmode=require"


def test_dbname_defaults_to_the_user_then_postgres() -> None:
    assert parts(dbmate_url("host=h user=alice sslmode=disable"))[5] == "alice"
    assert parts(dbmate_url("host=h sslmode=disable"))[5] == "postgres"


def test_password_with_special_characters_in_a_url() -> None:
    from urllib.parse import quote

    conninfo = f"postgresql://writer:{quote(SPECIAL, safe='')}@db.example:5432/app?sslmode=require"
    _, user, password, host, port, dbname, _ = parts(dbmate_url(conninfo))
    assert (user, password, host, port, dbname) == ("writer", SPECIAL, "db.example", 5432, "app")


def test_password_user_and_dbname_with_special_characters_in_key_value_conninfo() -> None:
    def quoted(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    conninfo = (
        f"host=db.example port=5432 user={quoted('we@ird:user')} password={quoted(SPECIAL)} "
        f"dbname={quoted('my db/name?')} sslmode=verify-full"
    )
    url = dbmate_url(conninfo)
    _, user, password, host, port, dbname, query = parts(url)
    assert (user, password, host, port, dbname) == ("we@ird:user", SPECIAL, "db.example", 5432, "my db/name?")
    assert query == {"sslmode": ["verify-full"]}
    # Nothing special leaks into the URL's structure unencoded.
    authority = urlsplit(url).netloc
    assert authority.count("@") == 1
    assert authority.endswith("@db.example:5432")


def test_url_with_special_characters_is_parsed_by_dbmate() -> None:
    """dbmate (Go's net/url) accepts the URL and tries the right host and port."""
    url = dbmate_url(
        f"host=127.0.0.1 port=1 user=w password='{SPECIAL.replace(chr(39), chr(92) + chr(39))}' "
        "dbname='my db' sslmode=disable"
    )
    error = dbmate_connect_error(url)
    assert "127.0.0.1:1" in error
    assert SPECIAL not in error


@pytest.mark.parametrize(
    "conninfo",
    [
        "host=/var/run/postgresql dbname=app user=writer sslmode=disable",
        "postgresql://writer@%2Fvar%2Frun%2Fpostgresql/app?sslmode=disable",
        "postgresql:///app?host=/var/run/postgresql&user=writer&sslmode=disable",
    ],
    ids=["key-value", "encoded-host", "host-parameter"],
)
def test_unix_socket_host(conninfo: str) -> None:
    url = dbmate_url(conninfo)
    _, user, _, host, port, dbname, query = parts(url)
    assert (user, host, port, dbname) == ("writer", "", None, "app")
    assert query == {"sslmode": ["disable"], "socket": ["/var/run/postgresql"]}


def test_unix_socket_with_port_reaches_the_right_socket_file(tmp_path: Path) -> None:
    url = dbmate_url(f"host={tmp_path} port=5433 dbname=app user=writer sslmode=disable")
    _, _, _, host, port, _, query = parts(url)
    assert (host, port, query["socket"]) == ("", 5433, [str(tmp_path)])
    error = dbmate_connect_error(url)
    assert f"{tmp_path}/.s.PGSQL.5433" in error


def test_tcp_host_and_port_reach_dbmate() -> None:
    error = dbmate_connect_error(dbmate_url("postgresql://w@127.0.0.1:1/app?sslmode=disable"))
    assert "127.0.0.1:1" in error


def test_ipv6_host_reaches_dbmate() -> None:
    error = dbmate_connect_error(dbmate_url("postgresql://w@[::1]:1/app?sslmode=disable"))
    assert "[::1]:1:" in error


def test_tls_files_and_options_are_passed_on() -> None:
    url = dbmate_url(
        "host=db.example dbname=app user=w sslmode=verify-full sslrootcert='/etc/ssl/my ca.pem' "
        "sslcert=/c.pem sslkey=/k.pem options='-c search_path=app'"
    )
    assert parts(url)[6] == {
        "sslmode": ["verify-full"],
        "sslrootcert": ["/etc/ssl/my ca.pem"],
        "sslcert": ["/c.pem"],
        "sslkey": ["/k.pem"],
        "options": ["-c search_path=app"],
    }


@pytest.mark.parametrize(
    "conninfo",
    [
        "host=h dbname",
        "postgresql://h/db?sslmode=disable&bogus=1",
        "mysql://h/db",
        "host='unterminated sslmode=disable",
    ],
)
def test_invalid_connection_string_is_a_configuration_error(conninfo: str) -> None:
    with pytest.raises(ConfigurationError, match="not a valid connection string"):
        dbmate_url(conninfo)
