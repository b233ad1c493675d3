"""What every route needs: the caller (from the Bearer token), the store, cursors.

The token is verified by the gateway's :class:`~arcyou_trio.auth.Verifier` (in dev mode the
token is the user's UUID, as on the WebSocket). Cursors are opaque to clients: URL-safe base64
of the store's keyset position (or, for search, an offset).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from arcyou_trio.auth import Verifier
from arcyou_trio.errors import AuthError, OutOfRange
from arcyou_trio.store import Store
from arcyou_trio.store.directory import Cursor

MAX_SEARCH_OFFSET = 1000

_bearer = HTTPBearer(auto_error=False, description="a JWT, or in dev mode the user's UUID")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> uuid.UUID:
    """The user the request's ``Authorization: Bearer`` token names (401 otherwise)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("an Authorization: Bearer <token> header is required", "missing_token")
    verifier: Verifier = request.app.state.verifier
    return verifier.verify(credentials.credentials)


def store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


Caller = Annotated[uuid.UUID, Depends(caller)]
Db = Annotated[Store, Depends(store)]


def encode_cursor(cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    raw = f"{cursor[0]}.{cursor[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> Cursor | None:
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        us, _, key = raw.partition(".")
        return int(us), uuid.UUID(key)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise OutOfRange("cursor", "not a cursor this API gave out") from None


def encode_offset(offset: int | None) -> str | None:
    if offset is None:
        return None
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def decode_offset(text: str | None) -> int:
    if text is None:
        return 0
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if not raw.startswith("o"):
            raise ValueError(raw)
        offset = int(raw[1:])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise OutOfRange("cursor", "not a cursor this API gave out") from None
    if not 0 <= offset <= MAX_SEARCH_OFFSET:
        raise OutOfRange("cursor", f"search results end after {MAX_SEARCH_OFFSET}")
    return offset
