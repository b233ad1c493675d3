"""What the client is told when a request's I/O did not succeed: refusals and failures.

The gateway performs a request's I/O (database, subscriptions) and hands the outcome here; this
module turns it into the :class:`~arcyou_trio.protocol.requests.RequestError` (hence the error
reply) to send. Pure: it knows the error classes of :mod:`arcyou_trio.errors`, not the drivers.
The strings are the wire's (docs/protocol.md); clients and tests match on them.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from arcyou_trio.errors import BusTimeout, BusUnavailable, StoreTimeout, StoreUnavailable
from arcyou_trio.protocol.messages import error_reply
from arcyou_trio.protocol.requests import RequestError
from arcyou_trio.protocol.session import FORBIDDEN, UNAUTHORIZED

UNAVAILABLE = "Service temporarily unavailable"
REPLY_NOT_FOUND = "reply_to_message_id not found in this room"
AHEAD_OF_ROOM = "last_read_message_id is ahead of the room's last message"
ROOM_CLOSED = "Forbidden: room is closed"
# The field of a failed auth reply that carries AuthError.reason (arcyou_trio.auth.REASONS).
AUTH_REASON = "reason"

# The "reason" of an UNAVAILABLE reply (docs/protocol.md, "Failures").
REASON_TIMEOUT = "timeout"
REASON_DATABASE_UNAVAILABLE = "database_unavailable"
REASON_PUBSUB_UNAVAILABLE = "pubsub_unavailable"
REASON_DATABASE_ERROR = "database_error"


class Refusal(enum.Enum):
    """Why the database refused a send, ack or join (the store returns these)."""

    NOT_MEMBER = "not_member"
    REPLY_NOT_FOUND = "reply_not_found"
    AHEAD_OF_ROOM = "ahead_of_room"
    ROOM_CLOSED = "room_closed"


_REFUSAL_ERRORS = {
    Refusal.NOT_MEMBER: FORBIDDEN,
    Refusal.REPLY_NOT_FOUND: REPLY_NOT_FOUND,
    Refusal.AHEAD_OF_ROOM: AHEAD_OF_ROOM,
    Refusal.ROOM_CLOSED: ROOM_CLOSED,
}


def refused(
    op: str,
    refusal: Refusal,
    *,
    temp_id: str | None = None,
    room_id: uuid.UUID | None = None,
) -> RequestError:
    """The error reply for a request the database refused."""
    return RequestError(op, _REFUSAL_ERRORS[refusal], temp_id, _room(room_id))


def unavailable_reason(exc: BaseException) -> str:
    """The ``reason`` of an UNAVAILABLE reply caused by ``exc``.

    In every case nothing was stored that the client cannot find by retrying: a send retried
    with its temp_id is stored once.
    """
    if isinstance(exc, StoreTimeout | BusTimeout):
        return REASON_TIMEOUT
    if isinstance(exc, StoreUnavailable):
        return REASON_DATABASE_UNAVAILABLE
    if isinstance(exc, BusUnavailable):
        return REASON_PUBSUB_UNAVAILABLE
    return REASON_DATABASE_ERROR


def unavailable(
    op: str,
    exc: BaseException,
    *,
    temp_id: str | None = None,
    room_id: uuid.UUID | None = None,
) -> RequestError:
    """The error reply for a request whose database or Redis step failed with ``exc``."""
    return RequestError(op, UNAVAILABLE, temp_id, _room(room_id), reason=unavailable_reason(exc))


def auth_failed(reason: str | None) -> dict[str, Any]:
    """The reply to a failed ``auth``: the seed's, plus the machine-readable ``reason`` when
    given (JWT mode only: dev-mode replies stay exactly the seed's)."""
    reply = error_reply(RequestError("auth", UNAUTHORIZED))
    if reason is not None:
        reply[AUTH_REASON] = reason
    return reply


def _room(room_id: uuid.UUID | None) -> str | None:
    return None if room_id is None else str(room_id)
