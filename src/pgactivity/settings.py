"""Settings: one frozen dataclass, read once from the environment and passed in."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pgactivity.errors import ConfigurationError

_NATS_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def valid_prefix(prefix: str) -> bool:
    """A NATS subject prefix: dot-separated tokens without wildcards or blanks."""
    return bool(_NATS_PREFIX.match(prefix))


_HMAC_ALGORITHMS = ("HS256",)
_PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


def default_data_dir() -> Path:
    """Where `serve` keeps its embedded PostgreSQL when DATABASE_URL is unset.

    The user's data directory, except for root: PostgreSQL runs as another user
    and must be able to reach the directory, so root's data stays out of /root.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/tmp/pgactivity")
    import platformdirs

    return Path(platformdirs.user_data_dir("pgactivity"))


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    host: str = "127.0.0.1"
    port: int = 8000

    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = field(default=None, repr=False)
    jwt_algorithms: tuple[str, ...] = _HMAC_ALGORITHMS
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    org_claim: str = "org_id"
    jwt_require_exp: bool = True
    jwt_leeway_seconds: float = 5.0

    heartbeat_seconds: float = 30.0
    snapshot_limit: int = 100
    snapshot_max_bytes: int = 1024 * 1024
    client_buffer_bytes: int = 8 * 1024 * 1024
    client_buffer_events: int = 10_000
    client_send_timeout_seconds: float = 60.0
    pool_min_size: int = 1
    pool_max_size: int = 10
    listener_ping_seconds: float = 5.0
    shutdown_grace_seconds: float = 3.0
    retention_days: float | None = None
    retention_interval_seconds: float = 3600.0
    cors_origins: tuple[str, ...] = ()
    nats_servers: tuple[str, ...] = ()  # broker mode when set
    nats_subject_prefix: str = "pgactivity"

    slack_bot_token: str | None = field(default=None, repr=False)
    slack_channel: str | None = None
    slack_base_url: str | None = None
    slack_start: str = "end"
    slack_update_seconds: float = 1.0
    slack_timeout_seconds: float = 10.0
    slack_retry_max_seconds: float = 60.0
    slack_max_attempts: int = 8

    data_dir: Path = field(default_factory=default_data_dir)
    embedded_port: int = 54329
    log_level: str = "INFO"
    log_format: str = "text"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        def number(name: str, default: float, *, minimum: float = 0) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
            if not math.isfinite(value):
                raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
            if value < minimum:
                raise ConfigurationError(f"{name} must be at least {minimum}, got {raw!r}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            value = raw.strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off"):
                return False
            raise ConfigurationError(f"{name} must be true or false, got {raw!r}")

        def port(name: str, default: int) -> int:
            value = number(name, default, minimum=1)
            if value != int(value) or value > 65535:
                raise ConfigurationError(f"{name} must be a port number (1-65535), got {get(name)!r}")
            return int(value)

        public_key = get("PGACTIVITY_JWT_PUBLIC_KEY")
        if public_key and not public_key.lstrip().startswith("-----"):
            # A path to a PEM file rather than the PEM itself.
            try:
                public_key = Path(public_key).read_text()
            except OSError as exc:
                raise ConfigurationError(f"PGACTIVITY_JWT_PUBLIC_KEY: cannot read {public_key}: {exc}") from None
        algorithms_raw = get("PGACTIVITY_JWT_ALGORITHMS")
        if algorithms_raw:
            algorithms = tuple(a.strip() for a in algorithms_raw.split(",") if a.strip())
        else:
            algorithms = _PUBLIC_KEY_ALGORITHMS if public_key else _HMAC_ALGORITHMS
        allowed = _PUBLIC_KEY_ALGORITHMS if public_key else _HMAC_ALGORITHMS
        bad = [a for a in algorithms if a not in allowed]
        if bad:
            raise ConfigurationError(
                f"PGACTIVITY_JWT_ALGORITHMS: {', '.join(bad)} not allowed with "
                f"{'a public key' if public_key else 'a shared secret'} (allowed: {', '.join(allowed)})"
            )
        slack_start = (get("PGACTIVITY_SLACK_START") or "end").lower()
        if slack_start not in ("end", "beginning"):
            raise ConfigurationError(f"PGACTIVITY_SLACK_START must be 'end' or 'beginning', got {slack_start!r}")
        retention = get("PGACTIVITY_RETENTION_DAYS")
        log_format = (get("PGACTIVITY_LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise ConfigurationError(f"PGACTIVITY_LOG_FORMAT must be text or json, got {log_format!r}")
        data_dir = get("PGACTIVITY_DATA_DIR")
        nats_servers = tuple(u.strip() for u in (get("PGACTIVITY_NATS_URL") or "").split(",") if u.strip())
        for url in nats_servers:
            if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ConfigurationError(f"PGACTIVITY_NATS_URL: {url!r} is not a nats://host:port URL")
        nats_prefix = get("PGACTIVITY_NATS_SUBJECT_PREFIX") or "pgactivity"
        if not valid_prefix(nats_prefix):
            raise ConfigurationError(
                f"PGACTIVITY_NATS_SUBJECT_PREFIX must be dot-separated tokens of letters, digits, '-' and '_', "
                f"got {nats_prefix!r}"
            )
        return cls(
            database_url=get("DATABASE_URL"),
            host=get("PGACTIVITY_HOST") or "127.0.0.1",
            port=port("PGACTIVITY_PORT", 8000),
            jwt_secret=get("PGACTIVITY_JWT_SECRET"),
            jwt_public_key=public_key,
            jwt_algorithms=algorithms,
            jwt_audience=get("PGACTIVITY_JWT_AUDIENCE"),
            jwt_issuer=get("PGACTIVITY_JWT_ISSUER"),
            org_claim=get("PGACTIVITY_ORG_CLAIM") or "org_id",
            jwt_require_exp=flag("PGACTIVITY_JWT_REQUIRE_EXP", True),
            jwt_leeway_seconds=number("PGACTIVITY_JWT_LEEWAY_SECONDS", 5.0),
            heartbeat_seconds=number("PGACTIVITY_HEARTBEAT_SECONDS", 30.0, minimum=0.05),
            snapshot_limit=int(number("PGACTIVITY_SNAPSHOT_LIMIT", 100, minimum=1)),
            snapshot_max_bytes=int(number("PGACTIVITY_SNAPSHOT_MAX_BYTES", 1024 * 1024, minimum=1024)),
            client_buffer_bytes=int(number("PGACTIVITY_CLIENT_BUFFER_BYTES", 8 * 1024 * 1024, minimum=1024)),
            client_buffer_events=int(number("PGACTIVITY_CLIENT_BUFFER_EVENTS", 10_000, minimum=1)),
            client_send_timeout_seconds=number("PGACTIVITY_CLIENT_SEND_TIMEOUT_SECONDS", 60.0),
            pool_min_size=int(number("PGACTIVITY_POOL_MIN_SIZE", 1, minimum=1)),
            pool_max_size=int(number("PGACTIVITY_POOL_MAX_SIZE", 10, minimum=1)),
            listener_ping_seconds=number("PGACTIVITY_LISTENER_PING_SECONDS", 5.0, minimum=0.1),
            shutdown_grace_seconds=number("PGACTIVITY_SHUTDOWN_GRACE_SECONDS", 3.0),
            retention_days=number("PGACTIVITY_RETENTION_DAYS", 0) if retention else None,
            retention_interval_seconds=number("PGACTIVITY_RETENTION_INTERVAL_SECONDS", 3600.0, minimum=1),
            cors_origins=tuple(o.strip() for o in (get("PGACTIVITY_CORS_ORIGINS") or "").split(",") if o.strip()),
            nats_servers=nats_servers,
            nats_subject_prefix=nats_prefix,
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_channel=get("PGACTIVITY_SLACK_CHANNEL"),
            slack_base_url=get("PGACTIVITY_SLACK_BASE_URL"),
            slack_start=slack_start,
            slack_update_seconds=number("PGACTIVITY_SLACK_UPDATE_SECONDS", 1.0, minimum=0.1),
            slack_timeout_seconds=number("PGACTIVITY_SLACK_TIMEOUT_SECONDS", 10.0, minimum=0.5),
            slack_retry_max_seconds=number("PGACTIVITY_SLACK_RETRY_MAX_SECONDS", 60.0, minimum=0.1),
            slack_max_attempts=int(number("PGACTIVITY_SLACK_MAX_ATTEMPTS", 8, minimum=1)),
            data_dir=Path(data_dir) if data_dir else default_data_dir(),
            embedded_port=port("PGACTIVITY_EMBEDDED_PORT", 54329),
            log_level=(get("PGACTIVITY_LOG_LEVEL") or "INFO").upper(),
            log_format=log_format,
        )

    @property
    def jwt_configured(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key)

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and self.slack_channel)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
