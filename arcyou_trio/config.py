"""Settings: one frozen object built from the environment, passed down explicitly.

Nothing else in the package reads ``os.environ``. Every field names its environment variable in
its metadata; a bad value raises :class:`~arcyou_trio.errors.ConfigError` naming that variable,
which the entry points turn into one line on stderr and exit code 2.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import attrs
import cattrs

from arcyou_trio.errors import ConfigError

DEV_PLACEHOLDER = "dev-placeholder"


class PubSubMode(enum.Enum):
    """How the worker publishes and the gateway subscribes (seed §6)."""

    GLOBAL = "global"
    PERCONV = "perconv"


def _env(name: str, default: Any, *, validator: Any = None, secret: bool = False) -> Any:
    return attrs.field(
        default=default, validator=validator, repr=not secret, metadata={"env": name}
    )


def _check(test: Callable[[Any], bool], problem: str) -> Callable[[Any, Any, Any], None]:
    def validate(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not test(value):
            raise ConfigError(attribute.metadata["env"], f"{problem}, got {value!r}")

    return validate


_positive = _check(lambda v: v > 0, "must be a positive integer")
_port = _check(lambda v: 0 <= v <= 65535, "must be a TCP port (0-65535)")


@attrs.frozen
class Settings:
    """All runtime settings. Units are in the field names."""

    database_url: str = _env(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres", secret=True
    )
    # The workers' LISTEN connection must reach PostgreSQL directly: PgBouncer in transaction
    # pooling mode cannot hold a LISTEN. Defaults to DATABASE_URL.
    database_listen_url: str | None = _env("DATABASE_LISTEN_URL", None, secret=True)
    redis_url: str = _env("REDIS_URL", "redis://127.0.0.1:6379/0", secret=True)
    host: str = _env("HOST", "0.0.0.0")
    port: int = _env("PORT", 8080, validator=_port)
    # The HTTP API (python -m arcyou_trio.api) listens on HOST:API_PORT.
    api_port: int = _env("API_PORT", 8081, validator=_port)
    jwt_public_key: str | None = _env("JWT_PUBLIC_KEY", None, secret=True)
    # A JSON Web Key Set (RFC 7517), from a file or an http(s) URL, instead of JWT_PUBLIC_KEY:
    # tokens pick their key by `kid`. Read at startup and again every JWT_JWKS_REFRESH_MS, so
    # keys rotate without a restart.
    jwt_jwks_file: str | None = _env("JWT_JWKS_FILE", None)
    jwt_jwks_url: str | None = _env("JWT_JWKS_URL", None)
    jwt_jwks_refresh_ms: int = _env("JWT_JWKS_REFRESH_MS", 60_000, validator=_positive)
    jwt_issuer: str | None = _env("JWT_ISSUER", None)
    jwt_audience: str | None = _env("JWT_AUDIENCE", None)
    jwt_leeway_ms: int = _env(
        "JWT_LEEWAY_MS", 5000, validator=_check(lambda v: v >= 0, "must be >= 0")
    )
    pubsub_mode: PubSubMode = _env("PUBSUB_MODE", PubSubMode.GLOBAL)
    redis_channel_prefix: str = _env("REDIS_CHANNEL_PREFIX", "")
    max_body_bytes: int = _env("MAX_BODY_BYTES", 65536, validator=_positive)
    max_text_chars: int = _env("MAX_TEXT_CHARS", 4000, validator=_positive)
    rl_bucket_capacity: int = _env("RL_BUCKET_CAPACITY", 30, validator=_positive)
    rl_refill_ms: int = _env("RL_REFILL_MS", 10000, validator=_positive)
    ws_send_high_water_bytes: int = _env("WS_SEND_HIGH_WATER", 1 << 20, validator=_positive)
    # How long a connection's unsent live events may stay above WS_SEND_HIGH_WATER (a burst)
    # before it counts as a slow consumer; four times the mark is slow at once.
    ws_slow_consumer_ms: int = _env("WS_SLOW_CONSUMER_MS", 1000, validator=_positive)
    # How long a gap in a room's live events (seq n+2 before n+1) may wait for the missing event
    # before the gateway reads it from the database (several workers publish out of order).
    gap_wait_ms: int = _env("GAP_WAIT_MS", 50, validator=_check(lambda v: v >= 0, "must be >= 0"))
    # How often the gateway compares its rooms' last seq in the database with what its
    # connections got (a safety net for an event that was never published); 0 disables it.
    resync_interval_ms: int = _env(
        "RESYNC_INTERVAL_MS", 30000, validator=_check(lambda v: v >= 0, "must be >= 0")
    )
    auth_timeout_ms: int = _env("AUTH_TIMEOUT_MS", 10000, validator=_positive)
    ws_ping_interval_ms: int = _env("WS_PING_INTERVAL_MS", 30000, validator=_positive)
    ws_ping_timeout_ms: int = _env("WS_PING_TIMEOUT_MS", 10000, validator=_positive)
    max_connections: int = _env("MAX_CONNECTIONS", 50000, validator=_positive)
    max_rooms_per_connection: int = _env("MAX_ROOMS_PER_CONNECTION", 1000, validator=_positive)
    backfill_limit: int = _env("BACKFILL_LIMIT", 500, validator=_positive)
    backoff_base_ms: int = _env("BACKOFF_BASE_MS", 500, validator=_positive)
    backoff_cap_ms: int = _env("BACKOFF_CAP_MS", 30000, validator=_positive)
    max_attempts: int = _env("MAX_ATTEMPTS", 20, validator=_positive)
    outbox_poll_ms: int = _env("OUTBOX_POLL_MS", 1000, validator=_positive)
    outbox_batch_size: int = _env("OUTBOX_BATCH_SIZE", 200, validator=_positive)
    outbox_lease_ms: int = _env("OUTBOX_LEASE_MS", 30000, validator=_positive)
    db_pool_size: int = _env("DB_POOL_SIZE", 8, validator=_positive)
    send_batch_max: int = _env("SEND_BATCH_MAX", 256, validator=_positive)
    db_timeout_ms: int = _env("DB_TIMEOUT_MS", 5000, validator=_positive)
    # psycopg's ``prepare_threshold`` for pool connections: a query is prepared server-side after
    # this many executions on one connection (0: at once). ``none``/``off`` disables prepared
    # statements, which PgBouncer < 1.21 in transaction pooling mode requires: it hands each
    # transaction any server connection, and named statements do not follow the client.
    db_prepare_threshold: int | None = _env(
        "DB_PREPARE_THRESHOLD",
        5,
        validator=_check(lambda v: v is None or v >= 0, "must be >= 0, or none/off"),
    )
    shutdown_grace_ms: int = _env("SHUTDOWN_GRACE_MS", 10000, validator=_positive)
    worker_id: str = _env("WORKER_ID", f"{socket.gethostname()}-{os.getpid()}")
    log_format: str = _env(
        "LOG_FORMAT",
        "text",
        validator=_check(lambda v: v in {"text", "json"}, "must be text or json"),
    )
    log_level: str = _env(
        "LOG_LEVEL",
        "INFO",
        validator=_check(
            lambda v: v in {"DEBUG", "INFO", "WARNING", "ERROR"},
            "must be one of DEBUG, INFO, WARNING, ERROR",
        ),
    )

    def __attrs_post_init__(self) -> None:
        if self.backoff_cap_ms < self.backoff_base_ms:
            raise ConfigError("BACKOFF_CAP_MS", "must be >= BACKOFF_BASE_MS")

    @property
    def listen_url(self) -> str:
        """Where the outbox workers LISTEN for new rows (a direct PostgreSQL connection)."""
        return self.database_listen_url or self.database_url

    @property
    def dev_auth(self) -> bool:
        """True when tokens are plain user UUIDs (``JWT_PUBLIC_KEY=dev-placeholder`` and no
        ``JWT_JWKS_FILE``)."""
        return self.jwt_public_key == DEV_PLACEHOLDER and not self.jwks_variable

    @property
    def jwks_variable(self) -> str | None:
        """Which variable names the key set, if one does: JWT_JWKS_FILE or JWT_JWKS_URL."""
        if self.jwt_jwks_file:
            return "JWT_JWKS_FILE"
        if self.jwt_jwks_url:
            return "JWT_JWKS_URL"
        return None

    def require_auth_key(self) -> str | None:
        """The gateway cannot start without an auth mode chosen explicitly.

        Returns ``JWT_PUBLIC_KEY`` (a PEM, or ``dev-placeholder``), or None when the keys come
        from ``JWT_JWKS_FILE`` or ``JWT_JWKS_URL`` instead. A key set wins over
        ``dev-placeholder`` (the stricter mode: ``arcyou-trio dev`` defaults ``JWT_PUBLIC_KEY``
        to the placeholder); a PEM and a key set, or a file and a URL, together are an error.
        """
        if self.jwt_jwks_file and self.jwt_jwks_url:
            raise ConfigError(
                "JWT_JWKS_URL", "set together with JWT_JWKS_FILE: configure only one of them"
            )
        if variable := self.jwks_variable:
            if self.jwt_public_key and self.jwt_public_key != DEV_PLACEHOLDER:
                raise ConfigError(
                    variable, "set together with JWT_PUBLIC_KEY: configure only one of them"
                )
            if self.jwt_jwks_url and not self.jwt_jwks_url.startswith(("http://", "https://")):
                raise ConfigError("JWT_JWKS_URL", "must be an http:// or https:// URL")
            return None
        if not self.jwt_public_key:
            raise ConfigError(
                "JWT_PUBLIC_KEY",
                "required: a PEM public key, or 'dev-placeholder' for development"
                " (or set JWT_JWKS_FILE instead)",
            )
        return self.jwt_public_key

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment)."""
        env = dict(os.environ if environ is None else environ)
        raw: dict[str, Any] = {}
        for field in attrs.fields(cls):
            name = field.metadata["env"]
            value = env.get(name)
            if value is None or value.strip() == "":
                continue
            raw[field.name] = _structure(name, value.strip(), field.type)
        if "database_url" not in raw:
            built = _database_url_from_parts(env)
            if built is not None:
                raw["database_url"] = built
        raw["redis_url"] = _with_redis_password(
            raw.get("redis_url", attrs.fields(cls).redis_url.default), env.get("REDIS_PASSWORD")
        )
        _check_url("DATABASE_URL", raw.get("database_url"), {"postgresql", "postgres"})
        _check_url(
            "DATABASE_LISTEN_URL", raw.get("database_listen_url"), {"postgresql", "postgres"}
        )
        _check_url("REDIS_URL", raw["redis_url"], {"redis", "rediss", "unix"})
        return cls(**raw)


_converter = cattrs.Converter()


# Words that mean "no value" for an ``int | None`` setting (compared case-insensitively).
_OFF_WORDS = ("none", "off")


def _structure(name: str, value: str, type_: Any) -> Any:
    try:
        if type_ is int:
            return int(value, 10)
        if type_ == int | None:
            return None if value.lower() in _OFF_WORDS else int(value, 10)
        if isinstance(type_, type) and issubclass(type_, enum.Enum):
            return _converter.structure(value.lower(), type_)
        return _converter.structure(value, str)
    except (ValueError, TypeError, cattrs.BaseValidationError):
        if type_ is int:
            raise ConfigError(name, f"must be an integer, got {value!r}") from None
        if type_ == int | None:
            words = " or ".join(_OFF_WORDS)
            raise ConfigError(name, f"must be an integer or {words}, got {value!r}") from None
        choices = " | ".join(m.value for m in type_)
        raise ConfigError(name, f"must be one of {choices}, got {value!r}") from None


def _database_url_from_parts(env: Mapping[str, str]) -> str | None:
    user = env.get("POSTGRES_USER")
    if not user:
        return None
    password = env.get("POSTGRES_PASSWORD", "")
    host = env.get("POSTGRES_HOST", "127.0.0.1")
    port = env.get("POSTGRES_PORT", "5432")
    if not (port.isascii() and port.isdigit()):
        raise ConfigError("POSTGRES_PORT", f"must be an integer, got {port!r}")
    db = env.get("POSTGRES_DB", user)
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"postgresql://{auth}@{host}:{port}/{quote(db, safe='')}"


def _with_redis_password(url: str, password: str | None) -> str:
    if not password:
        return url
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError("REDIS_URL", f"not a valid URL ({exc})") from None
    if parts.password:
        return url
    user = quote(parts.username, safe="") if parts.username else ""
    netloc = f"{user}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def _check_url(name: str, url: str | None, schemes: set[str]) -> None:
    if url is None:
        return
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        raise ConfigError(name, f"not a valid URL ({exc})") from None
    if scheme not in schemes:
        raise ConfigError(
            name, f"must be a URL with scheme {' or '.join(sorted(schemes))}, got {scheme!r}"
        )


attrs.resolve_types(Settings)
