"""Tests for ``arcyou_trio.config.Settings`` built from an explicit environment mapping.

Covers the seed defaults, integer variables (valid values, and rejection naming the variable),
``DB_PREPARE_THRESHOLD`` (an integer >= 0, or ``none``/``off``),
``PUBSUB_MODE``, ``LOG_LEVEL``, ``DATABASE_URL`` assembled from ``POSTGRES_*`` (and overridden by
``DATABASE_URL``), ``REDIS_PASSWORD`` insertion into ``REDIS_URL``, URL scheme checks,
``BACKOFF_CAP_MS >= BACKOFF_BASE_MS``, ``require_auth_key()``, ``dev_auth`` and that ``repr`` does
not leak secrets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.config import DEV_PLACEHOLDER, PubSubMode, Settings
from arcyou_trio.errors import ConfigError

FAST = settings(max_examples=100, deadline=None, database=None)

INT_VARS = {
    field.metadata["env"]: field.name for field in attrs.fields(Settings) if field.type is int
}
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"


def _config_error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return info.value


# -- defaults ------------------------------------------------------------------------------------


def test_seed_defaults() -> None:
    s = Settings.from_env({})
    assert s.max_body_bytes == 65536
    assert s.rl_bucket_capacity == 30
    assert s.rl_refill_ms == 10000
    assert s.backfill_limit == 500
    assert s.outbox_poll_ms == 1000
    assert s.port == 8080
    assert s.host == "0.0.0.0"
    assert s.pubsub_mode is PubSubMode.GLOBAL


def test_other_defaults() -> None:
    s = Settings.from_env({})
    assert s.database_url == DEFAULT_DATABASE_URL
    assert s.redis_url == DEFAULT_REDIS_URL
    assert s.jwt_public_key is None
    assert s.max_text_chars == 4000
    assert s.backoff_base_ms <= s.backoff_cap_ms
    assert s.log_level == "INFO"
    assert s.worker_id
    assert not s.dev_auth


def test_every_field_names_its_environment_variable() -> None:
    names = [field.metadata["env"] for field in attrs.fields(Settings)]
    assert len(names) == len(set(names))
    assert all(name == name.upper() for name in names)
    assert {"MAX_BODY_BYTES", "RL_BUCKET_CAPACITY", "RL_REFILL_MS", "PORT"} <= set(INT_VARS)


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_blank_values_mean_default(value: str) -> None:
    env = {name: value for name in [*INT_VARS, "HOST", "PUBSUB_MODE", "JWT_PUBLIC_KEY"]}
    s = Settings.from_env(env)
    assert s == Settings.from_env({})


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_from_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_BUCKET_CAPACITY", "7")
    assert Settings.from_env().rl_bucket_capacity == 7


# -- integers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", sorted(INT_VARS))
@pytest.mark.parametrize("value", ["abc", "1.5", "0", "-1", "0x10", "1e3", "12abc", "1 000"])
def test_int_variables_reject_bad_values(variable: str, value: str) -> None:
    if variable in ("PORT", "API_PORT") and value == "0":
        # Ports accept 0-65535 on purpose (0 = any free port), see test_port_range.
        assert getattr(Settings.from_env({variable: "0"}), variable.lower()) == 0
        return
    if variable == "JWT_LEEWAY_MS" and value == "0":
        # No clock-skew allowance at all is a legitimate choice.
        assert Settings.from_env({"JWT_LEEWAY_MS": "0"}).jwt_leeway_ms == 0
        return
    if variable == "RESYNC_INTERVAL_MS" and value == "0":
        assert Settings.from_env({"RESYNC_INTERVAL_MS": "0"}).resync_interval_ms == 0
        return
    if variable == "GAP_WAIT_MS" and value == "0":
        # Fill gaps from the database at once (a single worker never publishes out of order).
        assert Settings.from_env({"GAP_WAIT_MS": "0"}).gap_wait_ms == 0
        return
    err = _config_error({variable: value})
    assert err.variable == variable
    assert str(err).startswith(f"{variable}: ")
    assert value in err.problem


@pytest.mark.parametrize("variable", sorted(INT_VARS))
def test_int_variables_accept_positive_integers(variable: str) -> None:
    s = Settings.from_env({variable: " 30000 "})
    assert getattr(s, INT_VARS[variable]) == 30000


def test_port_range() -> None:
    assert Settings.from_env({"PORT": "65535"}).port == 65535
    assert Settings.from_env({"PORT": "0"}).port == 0
    for value in ("65536", "-1", "99999"):
        assert _config_error({"PORT": value}).variable == "PORT"


@FAST
@given(
    variable=st.sampled_from(sorted(set(INT_VARS) - {"PORT", "API_PORT", "BACKOFF_BASE_MS"})),
    value=st.integers(min_value=1, max_value=10**15),
)
def test_positive_integers_round_trip(variable: str, value: int) -> None:
    env = {variable: str(value)}
    if variable == "BACKOFF_CAP_MS":
        env["BACKOFF_BASE_MS"] = "1"
    assert getattr(Settings.from_env(env), INT_VARS[variable]) == value


@FAST
@given(
    variable=st.sampled_from(sorted(INT_VARS)),
    value=st.integers(max_value=0).map(str) | st.text(alphabet="abc.-+e ", min_size=1),
)
def test_non_positive_or_non_numeric_integers_are_rejected(variable: str, value: str) -> None:
    zero = value.strip() in ("0", "-0", "+0")
    if not value.strip() or (
        variable in ("PORT", "API_PORT", "JWT_LEEWAY_MS", "GAP_WAIT_MS", "RESYNC_INTERVAL_MS")
        and zero
    ):
        return
    try:
        parsed = int(value.strip(), 10)
    except ValueError:
        parsed = None
    if parsed is not None and parsed > 0:
        return
    assert _config_error({variable: value}).variable == variable


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(port=70000)
    assert info.value.variable == "PORT"
    with pytest.raises(ConfigError) as info:
        Settings(rl_bucket_capacity=0)
    assert info.value.variable == "RL_BUCKET_CAPACITY"


# -- DB_PREPARE_THRESHOLD: an integer >= 0, or none/off -----------------------------------------


def test_db_prepare_threshold_defaults_to_psycopgs_default() -> None:
    assert Settings.from_env({}).db_prepare_threshold == 5
    assert Settings.from_env({"DB_PREPARE_THRESHOLD": "  "}).db_prepare_threshold == 5


@pytest.mark.parametrize("value", ["none", "off", "NONE", "OFF", "None", "Off", " none\n"])
def test_db_prepare_threshold_none_or_off_disables_prepared_statements(value: str) -> None:
    assert Settings.from_env({"DB_PREPARE_THRESHOLD": value}).db_prepare_threshold is None


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("1", 1), ("5", 5), (" 100 ", 100)])
def test_db_prepare_threshold_accepts_non_negative_integers(value: str, expected: int) -> None:
    assert Settings.from_env({"DB_PREPARE_THRESHOLD": value}).db_prepare_threshold == expected


@pytest.mark.parametrize(
    "value", ["-1", "-5", "abc", "1.5", "0x10", "1e3", "null", "false", "no", "non\u0435", "o ff"]
)
def test_db_prepare_threshold_rejects_bad_values(value: str) -> None:
    err = _config_error({"DB_PREPARE_THRESHOLD": value})
    assert err.variable == "DB_PREPARE_THRESHOLD"
    assert str(err).startswith("DB_PREPARE_THRESHOLD: ")
    assert "\n" not in str(err)
    assert value in err.problem


@FAST
@given(value=st.integers(min_value=0, max_value=10**15))
def test_db_prepare_threshold_round_trips(value: int) -> None:
    assert Settings.from_env({"DB_PREPARE_THRESHOLD": str(value)}).db_prepare_threshold == value


@FAST
@given(value=st.integers(max_value=-1))
def test_db_prepare_threshold_rejects_negative_integers(value: int) -> None:
    err = _config_error({"DB_PREPARE_THRESHOLD": str(value)})
    assert err.variable == "DB_PREPARE_THRESHOLD"


def test_db_prepare_threshold_direct_construction_is_validated_too() -> None:
    assert Settings(db_prepare_threshold=None).db_prepare_threshold is None
    assert Settings(db_prepare_threshold=0).db_prepare_threshold == 0
    with pytest.raises(ConfigError) as info:
        Settings(db_prepare_threshold=-1)
    assert info.value.variable == "DB_PREPARE_THRESHOLD"


# -- enums and choices ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("global", PubSubMode.GLOBAL),
        ("GLOBAL", PubSubMode.GLOBAL),
        ("Global", PubSubMode.GLOBAL),
        ("perconv", PubSubMode.PERCONV),
        ("PERCONV", PubSubMode.PERCONV),
        ("PerConv", PubSubMode.PERCONV),
        (" perconv\n", PubSubMode.PERCONV),
    ],
)
def test_pubsub_mode_accepted(value: str, mode: PubSubMode) -> None:
    assert Settings.from_env({"PUBSUB_MODE": value}).pubsub_mode is mode


@pytest.mark.parametrize("value", ["per-conv", "per_conv", "local", "1", "globals", "redis"])
def test_pubsub_mode_rejected(value: str) -> None:
    err = _config_error({"PUBSUB_MODE": value})
    assert err.variable == "PUBSUB_MODE"
    assert "global" in err.problem
    assert "perconv" in err.problem


@pytest.mark.parametrize("value", ["DEBUG", "INFO", "WARNING", "ERROR"])
def test_log_level_accepted(value: str) -> None:
    assert Settings.from_env({"LOG_LEVEL": value}).log_level == value


@pytest.mark.parametrize("value", ["VERBOSE", "TRACE", "5"])
def test_log_level_rejected(value: str) -> None:
    assert _config_error({"LOG_LEVEL": value}).variable == "LOG_LEVEL"


def test_string_settings_are_stripped() -> None:
    s = Settings.from_env({"HOST": " 127.0.0.1 ", "WORKER_ID": " w-1 "})
    assert (s.host, s.worker_id) == ("127.0.0.1", "w-1")


# -- DATABASE_URL --------------------------------------------------------------------------------


def test_database_url_from_parts() -> None:
    env = {
        "POSTGRES_USER": "app",
        "POSTGRES_PASSWORD": "p@ss:w/rd#?%",
        "POSTGRES_DB": "chat",
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
    }
    url = Settings.from_env(env).database_url
    assert url == "postgresql://app:p%40ss%3Aw%2Frd%23%3F%25@db.internal:6543/chat"
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("db.internal", 6543, "/chat")
    assert unquote(parts.username or "") == "app"
    assert unquote(parts.password or "") == "p@ss:w/rd#?%"


def test_database_url_from_parts_defaults() -> None:
    url = Settings.from_env({"POSTGRES_USER": "app"}).database_url
    assert url == "postgresql://app@127.0.0.1:5432/app"


def test_database_url_parts_need_a_user() -> None:
    env = {"POSTGRES_PASSWORD": "x", "POSTGRES_DB": "chat", "POSTGRES_HOST": "db"}
    assert Settings.from_env(env).database_url == DEFAULT_DATABASE_URL


def test_database_url_wins_over_parts() -> None:
    env = {
        "DATABASE_URL": "postgres://u:pw@h:1/d",
        "POSTGRES_USER": "app",
        "POSTGRES_PASSWORD": "other",
        "POSTGRES_PORT": "not-a-port",
    }
    assert Settings.from_env(env).database_url == "postgres://u:pw@h:1/d"


@pytest.mark.parametrize("port", ["abc", "54.32", "-1", "5432x"])
def test_postgres_port_must_be_an_integer(port: str) -> None:
    err = _config_error({"POSTGRES_USER": "app", "POSTGRES_PORT": port})
    assert err.variable == "POSTGRES_PORT"


@FAST
@given(
    user=st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
    password=st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20),
    db=st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
)
def test_database_url_parts_survive_quoting(user: str, password: str, db: str) -> None:
    env = {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": db}
    parts = urlsplit(Settings.from_env(env).database_url)
    assert parts.scheme == "postgresql"
    assert parts.hostname == "127.0.0.1"
    assert parts.port == 5432
    assert unquote(parts.username or "") == user
    assert unquote(parts.password or "") == password
    assert unquote(parts.path[1:]) == db


@pytest.mark.parametrize("port", ["\uff15\uff14\uff13\uff12", "\u00b2"], ids=["fullwidth", "sup2"])
def test_postgres_port_must_be_ascii_digits(port: str) -> None:
    try:
        url = Settings.from_env({"POSTGRES_USER": "app", "POSTGRES_PORT": port}).database_url
    except ConfigError as err:
        assert err.variable == "POSTGRES_PORT"
    else:
        raise AssertionError(f"accepted POSTGRES_PORT={port!r}: {url}")


# -- REDIS_URL -----------------------------------------------------------------------------------


def test_redis_password_is_inserted_into_default_url() -> None:
    s = Settings.from_env({"REDIS_PASSWORD": "s3cret"})
    assert s.redis_url == "redis://:s3cret@127.0.0.1:6379/0"


def test_redis_password_is_quoted() -> None:
    env = {"REDIS_URL": "rediss://cache.internal:6380/2", "REDIS_PASSWORD": "a@b:c/d#e"}
    url = Settings.from_env(env).redis_url
    assert url == "rediss://:a%40b%3Ac%2Fd%23e@cache.internal:6380/2"
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("cache.internal", 6380, "/2")
    assert unquote(parts.password or "") == "a@b:c/d#e"


@FAST
@given(password=st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1))
def test_redis_password_survives_quoting(password: str) -> None:
    env = {"REDIS_URL": "redis://cache:6379/1", "REDIS_PASSWORD": password}
    parts = urlsplit(Settings.from_env(env).redis_url)
    assert (parts.hostname, parts.port, parts.path) == ("cache", 6379, "/1")
    assert unquote(parts.password or "") == password


def test_redis_url_with_password_is_kept() -> None:
    env = {"REDIS_URL": "redis://:inline@cache:6379/0", "REDIS_PASSWORD": "other"}
    assert Settings.from_env(env).redis_url == "redis://:inline@cache:6379/0"
    env = {"REDIS_URL": "redis://bob:inline@cache:6379/0", "REDIS_PASSWORD": "other"}
    assert Settings.from_env(env).redis_url == "redis://bob:inline@cache:6379/0"


def test_empty_redis_password_changes_nothing() -> None:
    env = {"REDIS_URL": "redis://cache:6379/0", "REDIS_PASSWORD": ""}
    assert Settings.from_env(env).redis_url == "redis://cache:6379/0"


def test_redis_password_keeps_the_username() -> None:
    env = {"REDIS_URL": "redis://alice@cache:6379/0", "REDIS_PASSWORD": "s3cret"}
    assert Settings.from_env(env).redis_url == "redis://alice:s3cret@cache:6379/0"


# -- URL schemes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("DATABASE_URL", "postgresql://u@h:5432/d"),
        ("DATABASE_URL", "postgres://u@h/d"),
        ("REDIS_URL", "redis://h:6379/0"),
        ("REDIS_URL", "rediss://h:6380/0"),
        ("REDIS_URL", "unix:///run/redis.sock"),
    ],
)
def test_good_url_schemes(variable: str, url: str) -> None:
    s = Settings.from_env({variable: url})
    assert getattr(s, variable.lower()) == url


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("DATABASE_URL", "mysql://u:hunter2@h/d"),
        ("DATABASE_URL", "http://u:hunter2@h/d"),
        ("DATABASE_URL", "sqlite:///tmp/db"),
        ("DATABASE_URL", "u:hunter2@h/d"),
        ("DATABASE_URL", "nonsense"),
        ("REDIS_URL", "http://:hunter2@h:6379"),
        ("REDIS_URL", "memcached://h"),
        ("REDIS_URL", "h:6379"),
        ("REDIS_URL", "postgresql://h/d"),
    ],
)
def test_bad_url_scheme_names_the_variable(variable: str, url: str) -> None:
    err = _config_error({variable: url})
    assert err.variable == variable
    assert "scheme" in err.problem
    assert "hunter2" not in str(err)


def test_bad_redis_scheme_with_password() -> None:
    err = _config_error({"REDIS_URL": "http://h:6379", "REDIS_PASSWORD": "pw"})
    assert err.variable == "REDIS_URL"


@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("DATABASE_URL", {"DATABASE_URL": "postgresql://u:p@[bad/db"}),
        ("REDIS_URL", {"REDIS_URL": "redis://[::1/0"}),
        ("REDIS_URL", {"REDIS_URL": "redis://[::1/0", "REDIS_PASSWORD": "pw"}),
    ],
)
def test_malformed_url_is_a_config_error(variable: str, env: dict[str, str]) -> None:
    assert _config_error(env).variable == variable


# -- cross-field checks --------------------------------------------------------------------------


def test_backoff_cap_below_base_is_an_error() -> None:
    err = _config_error({"BACKOFF_BASE_MS": "1000", "BACKOFF_CAP_MS": "999"})
    assert err.variable == "BACKOFF_CAP_MS"
    assert "BACKOFF_BASE_MS" in err.problem
    assert _config_error({"BACKOFF_CAP_MS": "100"}).variable == "BACKOFF_CAP_MS"
    assert _config_error({"BACKOFF_BASE_MS": "40000"}).variable == "BACKOFF_CAP_MS"


def test_backoff_cap_equal_to_base_is_fine() -> None:
    s = Settings.from_env({"BACKOFF_BASE_MS": "1000", "BACKOFF_CAP_MS": "1000"})
    assert s.backoff_base_ms == s.backoff_cap_ms == 1000


# -- auth key --------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"JWT_PUBLIC_KEY": ""}, {"JWT_PUBLIC_KEY": "   "}])
def test_require_auth_key_when_unset(env: dict[str, str]) -> None:
    s = Settings.from_env(env)
    with pytest.raises(ConfigError) as info:
        s.require_auth_key()
    assert info.value.variable == "JWT_PUBLIC_KEY"
    assert not s.dev_auth


def test_require_auth_key_returns_the_key() -> None:
    assert Settings.from_env({"JWT_PUBLIC_KEY": PEM}).require_auth_key() == PEM
    dev = Settings.from_env({"JWT_PUBLIC_KEY": DEV_PLACEHOLDER})
    assert dev.require_auth_key() == "dev-placeholder"


@pytest.mark.parametrize(
    ("key", "dev"),
    [
        ("dev-placeholder", True),
        ("  dev-placeholder\n", True),
        ("DEV-PLACEHOLDER", False),
        ("dev-placeholder-2", False),
        ("dev", False),
        (PEM, False),
        (None, False),
    ],
)
def test_dev_auth_only_for_the_placeholder(key: str | None, dev: bool) -> None:
    env = {} if key is None else {"JWT_PUBLIC_KEY": key}
    assert Settings.from_env(env).dev_auth is dev


# -- JWT_JWKS_FILE ---------------------------------------------------------------------------------

# A real P-256 public key as a JWK (the key of RFC 7515, appendix A.3).
EC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "kid": "e1",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}


def _jwks_file(tmp_path: Path, content: Any) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _gateway_config_error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        verifier_from_settings(Settings.from_env(env))
    return info.value


def test_jwks_file_alone_is_an_auth_mode(tmp_path: Path) -> None:
    path = _jwks_file(tmp_path, {"keys": [EC_JWK]})
    s = Settings.from_env({"JWT_JWKS_FILE": path})
    assert s.jwt_jwks_file == path
    assert s.jwt_public_key is None
    assert s.require_auth_key() is None
    assert not s.dev_auth
    assert not verifier_from_settings(s).dev_mode


def test_jwks_file_wins_over_dev_placeholder(tmp_path: Path) -> None:
    path = _jwks_file(tmp_path, {"keys": [EC_JWK]})
    s = Settings.from_env({"JWT_JWKS_FILE": path, "JWT_PUBLIC_KEY": DEV_PLACEHOLDER})
    assert s.require_auth_key() is None
    assert not s.dev_auth
    assert not verifier_from_settings(s).dev_mode


def test_jwks_file_and_public_key_together_is_an_error(tmp_path: Path) -> None:
    path = _jwks_file(tmp_path, {"keys": [EC_JWK]})
    s = Settings.from_env({"JWT_JWKS_FILE": path, "JWT_PUBLIC_KEY": PEM})
    with pytest.raises(ConfigError) as info:
        s.require_auth_key()
    assert info.value.variable == "JWT_JWKS_FILE"
    assert "JWT_PUBLIC_KEY" in info.value.problem
    assert _gateway_config_error({"JWT_JWKS_FILE": path, "JWT_PUBLIC_KEY": PEM}).variable == (
        "JWT_JWKS_FILE"
    )


def test_jwks_file_missing(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    err = _gateway_config_error({"JWT_JWKS_FILE": missing})
    assert err.variable == "JWT_JWKS_FILE"
    assert "nope.json" in err.problem
    assert _gateway_config_error({"JWT_JWKS_FILE": str(tmp_path)}).variable == "JWT_JWKS_FILE"


@pytest.mark.parametrize(
    "content",
    ["", "{not json", "[]", '{"keys": []}', '{"keys": "x"}', json.dumps(EC_JWK)],
    ids=["empty", "bad-json", "array", "no-keys", "keys-not-array", "bare-jwk"],
)
def test_jwks_file_not_a_key_set(tmp_path: Path, content: str) -> None:
    err = _gateway_config_error({"JWT_JWKS_FILE": _jwks_file(tmp_path, content)})
    assert err.variable == "JWT_JWKS_FILE"


def test_jwks_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(b"\xff\xfe{}")
    assert _gateway_config_error({"JWT_JWKS_FILE": str(path)}).variable == "JWT_JWKS_FILE"


def test_jwks_file_with_an_oct_key(tmp_path: Path) -> None:
    oct_key = {"kty": "oct", "kid": "h1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ"}
    path = _jwks_file(tmp_path, {"keys": [EC_JWK, oct_key]})
    err = _gateway_config_error({"JWT_JWKS_FILE": path})
    assert err.variable == "JWT_JWKS_FILE"
    assert "oct" in err.problem
    assert oct_key["k"] not in str(err)


# -- secrets ---------------------------------------------------------------------------------------


def _secret_env() -> dict[str, Any]:
    return {
        "POSTGRES_USER": "app",
        "POSTGRES_PASSWORD": "pg-Secret-1",
        "REDIS_PASSWORD": "redis-Secret-2",
        "JWT_PUBLIC_KEY": PEM,
    }


def test_repr_hides_passwords() -> None:
    s = Settings.from_env(_secret_env())
    assert "pg-Secret-1" in s.database_url
    assert "redis-Secret-2" in s.redis_url
    for text in (repr(s), str(s)):
        assert "pg-Secret-1" not in text
        assert "redis-Secret-2" not in text
        assert "BEGIN PUBLIC KEY" not in text
        assert "port=8080" in text


def test_repr_hides_passwords_given_in_urls() -> None:
    env = {
        "DATABASE_URL": "postgresql://u:pg-Secret-3@h/d",
        "REDIS_URL": "redis://:redis-Secret-4@h:6379/0",
    }
    text = repr(Settings.from_env(env))
    assert "pg-Secret-3" not in text
    assert "redis-Secret-4" not in text
