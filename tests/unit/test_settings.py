"""Settings.from_env: one frozen dataclass, read once from an environment mapping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pgactivity.errors import ConfigurationError
from pgactivity.settings import Settings, default_data_dir

PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.jwt_secret is None
    assert settings.jwt_public_key is None
    assert settings.jwt_algorithms == ("HS256",)
    assert settings.jwt_audience is None
    assert settings.jwt_issuer is None
    assert settings.org_claim == "org_id"
    assert settings.heartbeat_seconds == 30.0
    assert settings.snapshot_limit == 100
    assert settings.retention_days is None
    assert settings.cors_origins == ()
    assert settings.slack_bot_token is None
    assert settings.slack_channel is None
    assert settings.slack_base_url is None
    assert settings.data_dir == default_data_dir()
    assert settings.embedded_port == 54329
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.retention_interval_seconds == 3600.0
    assert settings.slack_start == "end"
    assert settings.jwt_require_exp is True
    assert settings.jwt_leeway_seconds == 5.0
    assert settings.slack_max_attempts == 8
    assert not settings.jwt_configured


def test_reads_every_variable() -> None:
    env = {
        "DATABASE_URL": "postgresql://app@db:5432/app",
        "PGACTIVITY_HOST": "0.0.0.0",
        "PGACTIVITY_PORT": "9000",
        "PGACTIVITY_JWT_SECRET": "s3cret",
        "PGACTIVITY_JWT_AUDIENCE": "dashboard",
        "PGACTIVITY_JWT_ISSUER": "https://auth.example",
        "PGACTIVITY_ORG_CLAIM": "tenant",
        "PGACTIVITY_HEARTBEAT_SECONDS": "2.5",
        "PGACTIVITY_SNAPSHOT_LIMIT": "50",
        "PGACTIVITY_CLIENT_BUFFER_BYTES": "65536",
        "PGACTIVITY_CLIENT_BUFFER_EVENTS": "500",
        "PGACTIVITY_CLIENT_SEND_TIMEOUT_SECONDS": "15",
        "PGACTIVITY_POOL_MIN_SIZE": "2",
        "PGACTIVITY_POOL_MAX_SIZE": "20",
        "PGACTIVITY_LISTENER_PING_SECONDS": "1",
        "PGACTIVITY_SHUTDOWN_GRACE_SECONDS": "0",
        "PGACTIVITY_RETENTION_DAYS": "7",
        "PGACTIVITY_CORS_ORIGINS": " https://a.example , ,https://b.example ",
        "SLACK_BOT_TOKEN": "xoxb-token",
        "PGACTIVITY_SLACK_CHANNEL": "#agents",
        "PGACTIVITY_SLACK_BASE_URL": "http://127.0.0.1:9999/api/",
        "PGACTIVITY_DATA_DIR": "/var/lib/pgactivity",
        "PGACTIVITY_EMBEDDED_PORT": "6000",
        "PGACTIVITY_LOG_LEVEL": "debug",
        "PGACTIVITY_JWT_REQUIRE_EXP": "false",
        "PGACTIVITY_JWT_LEEWAY_SECONDS": "30",
        "PGACTIVITY_SLACK_MAX_ATTEMPTS": "3",
    }
    s = Settings.from_env(env)
    assert s.database_url == "postgresql://app@db:5432/app"
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert s.jwt_secret == "s3cret"
    assert s.jwt_configured
    assert (s.jwt_audience, s.jwt_issuer, s.org_claim) == ("dashboard", "https://auth.example", "tenant")
    assert s.heartbeat_seconds == 2.5
    assert (s.snapshot_limit, s.client_buffer_bytes, s.client_buffer_events) == (50, 65536, 500)
    assert s.client_send_timeout_seconds == 15.0
    assert (s.pool_min_size, s.pool_max_size) == (2, 20)
    assert (s.listener_ping_seconds, s.shutdown_grace_seconds) == (1.0, 0.0)
    assert s.retention_days == 7.0
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert (s.slack_bot_token, s.slack_channel, s.slack_base_url) == (
        "xoxb-token",
        "#agents",
        "http://127.0.0.1:9999/api/",
    )
    assert s.data_dir == Path("/var/lib/pgactivity")
    assert s.embedded_port == 6000
    assert s.log_level == "DEBUG"
    assert (s.jwt_require_exp, s.jwt_leeway_seconds, s.slack_max_attempts) == (False, 30.0, 3)
    for name in (
        "port",
        "snapshot_limit",
        "client_buffer_bytes",
        "pool_max_size",
        "embedded_port",
        "slack_max_attempts",
    ):
        assert type(getattr(s, name)) is int, name


def test_empty_values_count_as_unset() -> None:
    env = {
        name: ""
        for name in (
            "DATABASE_URL",
            "PGACTIVITY_PORT",
            "PGACTIVITY_JWT_SECRET",
            "PGACTIVITY_RETENTION_DAYS",
            "PGACTIVITY_ORG_CLAIM",
            "PGACTIVITY_LOG_LEVEL",
            "PGACTIVITY_DATA_DIR",
            "PGACTIVITY_JWT_ALGORITHMS",
        )
    }
    assert Settings.from_env(env) == Settings.from_env({})


def test_reads_os_environ_when_given_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGACTIVITY_PORT", "8123")
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@y/z")
    settings = Settings.from_env()
    assert settings.port == 8123
    assert settings.database_url == "postgresql://x@y/z"


def test_is_frozen_and_with_makes_a_copy() -> None:
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    changed = settings.with_(port=1234, heartbeat_seconds=0.1)
    assert (changed.port, changed.heartbeat_seconds) == (1234, 0.1)
    assert settings.port == 8000


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env({"PGACTIVITY_JWT_SECRET": "jwt-secret-value", "SLACK_BOT_TOKEN": "xoxb-secret-value"})
    text = repr(settings)
    assert "jwt-secret-value" not in text
    assert "xoxb-secret-value" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PGACTIVITY_PORT", "eighty"),
        ("PGACTIVITY_PORT", "-1"),
        ("PGACTIVITY_HEARTBEAT_SECONDS", "0"),
        ("PGACTIVITY_HEARTBEAT_SECONDS", "0.01"),
        ("PGACTIVITY_SNAPSHOT_LIMIT", "0"),
        ("PGACTIVITY_CLIENT_BUFFER_BYTES", "100"),
        ("PGACTIVITY_CLIENT_BUFFER_EVENTS", "0"),
        ("PGACTIVITY_CLIENT_SEND_TIMEOUT_SECONDS", "-1"),
        ("PGACTIVITY_POOL_MIN_SIZE", "0"),
        ("PGACTIVITY_POOL_MAX_SIZE", "0"),
        ("PGACTIVITY_LISTENER_PING_SECONDS", "0.01"),
        ("PGACTIVITY_SHUTDOWN_GRACE_SECONDS", "-2"),
        ("PGACTIVITY_RETENTION_DAYS", "-1"),
        ("PGACTIVITY_RETENTION_DAYS", "a week"),
        ("PGACTIVITY_EMBEDDED_PORT", "x"),
        ("PGACTIVITY_RETENTION_INTERVAL_SECONDS", "0.5"),
        ("PGACTIVITY_SLACK_UPDATE_SECONDS", "0"),
        ("PGACTIVITY_SLACK_TIMEOUT_SECONDS", "0.1"),
        ("PGACTIVITY_SLACK_RETRY_MAX_SECONDS", "zero"),
    ],
)
def test_bad_numbers_are_configuration_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("PGACTIVITY_LOG_FORMAT", "JSON", "log_format", "json"),
        ("PGACTIVITY_LOG_FORMAT", "text", "log_format", "text"),
        ("PGACTIVITY_SLACK_START", "Beginning", "slack_start", "beginning"),
        ("PGACTIVITY_SLACK_START", "end", "slack_start", "end"),
    ],
)
def test_choices_are_case_insensitive(name: str, value: str, field: str, expected: str) -> None:
    assert getattr(Settings.from_env({name: value}), field) == expected


@pytest.mark.parametrize(("name", "value"), [("PGACTIVITY_LOG_FORMAT", "xml"), ("PGACTIVITY_SLACK_START", "middle")])
def test_unknown_choices_are_configuration_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_port_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({"PGACTIVITY_PORT": value})


def test_public_key_selects_asymmetric_algorithms() -> None:
    settings = Settings.from_env({"PGACTIVITY_JWT_PUBLIC_KEY": PEM})
    assert settings.jwt_public_key == PEM
    assert settings.jwt_algorithms == ("RS256", "ES256")
    assert settings.jwt_configured


def test_public_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text(PEM)
    settings = Settings.from_env({"PGACTIVITY_JWT_PUBLIC_KEY": str(key_file)})
    assert settings.jwt_public_key == PEM
    assert settings.jwt_algorithms == ("RS256", "ES256")


def test_unreadable_public_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="PGACTIVITY_JWT_PUBLIC_KEY"):
        Settings.from_env({"PGACTIVITY_JWT_PUBLIC_KEY": str(tmp_path / "missing.pem")})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PGACTIVITY_JWT_SECRET": "s", "PGACTIVITY_JWT_ALGORITHMS": "HS256"}, ("HS256",)),
        ({"PGACTIVITY_JWT_PUBLIC_KEY": PEM, "PGACTIVITY_JWT_ALGORITHMS": "ES256"}, ("ES256",)),
        (
            {"PGACTIVITY_JWT_PUBLIC_KEY": PEM, "PGACTIVITY_JWT_ALGORITHMS": " RS256 , ES256 ,"},
            ("RS256", "ES256"),
        ),
    ],
)
def test_algorithm_list_is_configurable(env: dict[str, str], expected: tuple[str, ...]) -> None:
    assert Settings.from_env(env).jwt_algorithms == expected


@pytest.mark.parametrize(
    "env",
    [
        {"PGACTIVITY_JWT_SECRET": "s", "PGACTIVITY_JWT_ALGORITHMS": "none"},
        {"PGACTIVITY_JWT_SECRET": "s", "PGACTIVITY_JWT_ALGORITHMS": "HS256,RS256"},
        {"PGACTIVITY_JWT_SECRET": "s", "PGACTIVITY_JWT_ALGORITHMS": "HS512"},
        {"PGACTIVITY_JWT_PUBLIC_KEY": PEM, "PGACTIVITY_JWT_ALGORITHMS": "HS256"},
        {"PGACTIVITY_JWT_PUBLIC_KEY": PEM, "PGACTIVITY_JWT_ALGORITHMS": "none"},
    ],
    ids=["none-with-secret", "rs256-with-secret", "hs512", "hs256-with-public-key", "none-with-public-key"],
)
def test_algorithm_swaps_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="PGACTIVITY_JWT_ALGORITHMS"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        (" off ", False),
    ],
)
def test_require_exp_is_a_boolean(raw: str, expected: bool) -> None:
    assert Settings.from_env({"PGACTIVITY_JWT_REQUIRE_EXP": raw}).jwt_require_exp is expected


@pytest.mark.parametrize(
    "env",
    [
        {"PGACTIVITY_JWT_REQUIRE_EXP": "maybe"},
        {"PGACTIVITY_JWT_LEEWAY_SECONDS": "-1"},
        {"PGACTIVITY_JWT_LEEWAY_SECONDS": "nan"},
        {"PGACTIVITY_SLACK_MAX_ATTEMPTS": "0"},
    ],
)
def test_bad_token_lifetime_and_slack_attempt_settings(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(env))):
        Settings.from_env(env)
