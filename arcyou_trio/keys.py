"""Where a JSON Web Key Set comes from: ``JWT_JWKS_FILE`` or ``JWT_JWKS_URL``.

Blocking reads (run at startup, and on a worker thread by the verifier's refresh task in
:mod:`arcyou_trio.auth`). A source that cannot be read raises :class:`ConfigError` naming its
variable: at startup that is one line and exit 2; on a refresh the current keys stay.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from arcyou_trio.config import Settings
from arcyou_trio.errors import ConfigError

#: A key set larger than this is refused (a JWKS holds a handful of public keys).
MAX_JWKS_BYTES = 1 << 20
FETCH_TIMEOUT_S = 5.0


def read_jwks_file(path: str) -> str:
    """The text of ``JWT_JWKS_FILE``; ConfigError naming it when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("JWT_JWKS_FILE", f"cannot read {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("JWT_JWKS_FILE", f"{path!r} is not UTF-8 text") from None


def fetch_jwks_url(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> str:
    """The body of ``JWT_JWKS_URL`` (GET, 200 expected); ConfigError naming it otherwise."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: bytes = response.read(MAX_JWKS_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ConfigError("JWT_JWKS_URL", f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError("JWT_JWKS_URL", f"cannot fetch {url}: {reason}") from None
    if len(body) > MAX_JWKS_BYTES:
        raise ConfigError("JWT_JWKS_URL", f"{url} sent more than {MAX_JWKS_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("JWT_JWKS_URL", f"{url} did not send UTF-8 text") from None


def jwks_source(settings: Settings) -> tuple[str, Callable[[], str]] | None:
    """(variable, reader) of the configured key set, or None without one."""
    if settings.jwt_jwks_file:
        path = settings.jwt_jwks_file
        return "JWT_JWKS_FILE", lambda: read_jwks_file(path)
    if settings.jwt_jwks_url:
        url = settings.jwt_jwks_url
        return "JWT_JWKS_URL", lambda: fetch_jwks_url(url)
    return None
