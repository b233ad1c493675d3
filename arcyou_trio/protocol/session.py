"""The per-connection protocol state machine, free of I/O.

A :class:`Session` turns each incoming frame into a validated request or a
:class:`~arcyou_trio.protocol.requests.RequestError` (rate limit, bad frame, wrong state), and
decides which room events a connection should receive and in what order. The gateway performs
the I/O a request needs (database, subscriptions) and reports the outcome back.

Join is a two-step affair because live events can arrive while the backfill query runs: between
:meth:`Session.begin_join` and :meth:`Session.end_join` live events for the room are buffered, and
anything the backfill already delivered (ids up to the backfill's highest id) is dropped, so a
client sees the backfill first, then live events, each message once.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

from arcyou_trio.protocol import codec
from arcyou_trio.protocol.ratelimit import TokenBucket
from arcyou_trio.protocol.requests import (
    Auth,
    Join,
    Limits,
    Request,
    RequestError,
    op_of,
    temp_id_of,
    validate,
)

F = TypeVar("F")

UNAUTHORIZED = "Unauthorized"
FORBIDDEN = "Forbidden: not a member"
RATE_LIMITED = "Rate limit exceeded"
ALREADY_AUTHENTICATED = "already authenticated"
TOO_MANY_ROOMS = "too many rooms joined"
BINARY_UNSUPPORTED = "binary frames are not supported"


class Phase(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    READY = "ready"


@attrs.define
class RoomCursor(Generic[F]):
    """What one connection has been given of one room."""

    joining: bool = True
    # Every message with an id up to here reached the client through backfill.
    backfilled_upto: int = 0
    buffered: list[tuple[int, F]] = attrs.Factory(list)


@attrs.define
class Session(Generic[F]):
    bucket: TokenBucket
    limits: Limits = attrs.Factory(Limits)
    max_rooms: int = 1000
    max_buffered_per_room: int = 10_000
    phase: Phase = Phase.AWAITING_AUTH
    user_id: uuid.UUID | None = None
    rooms: dict[uuid.UUID, RoomCursor[F]] = attrs.Factory(dict)

    # -- requests -------------------------------------------------------------------------

    def receive(self, data: str | bytes, now_ms: float) -> Request:
        """Validate one frame. Raises :class:`RequestError` with the reply to send instead."""
        if isinstance(data, bytes | bytearray):
            # Binary frames still cost a token: a flood of them must be throttled too.
            if not self.bucket.try_take(now_ms):
                raise RequestError("error", RATE_LIMITED)
            raise RequestError("error", BINARY_UNSUPPORTED)
        try:
            obj = codec.loads(data)
        except codec.DecodeError:
            obj = None
            decode_failed = True
        else:
            decode_failed = False
        if not self.bucket.try_take(now_ms):
            raise RequestError(op_of(obj), RATE_LIMITED, temp_id_of(obj))
        if decode_failed:
            raise RequestError("error", "invalid JSON")
        request = validate(obj, self.limits)
        op = op_of(obj)
        if isinstance(request, Auth):
            if self.phase is Phase.READY:
                raise RequestError(op, ALREADY_AUTHENTICATED)
            return request
        if self.phase is not Phase.READY:
            raise RequestError(op, UNAUTHORIZED, temp_id_of(obj))
        if (
            isinstance(request, Join)
            and request.room_id not in self.rooms
            and len(self.rooms) >= self.max_rooms
        ):
            raise RequestError(op, TOO_MANY_ROOMS, room_id=str(request.room_id))
        return request

    def authenticated(self, user_id: uuid.UUID) -> None:
        if self.phase is Phase.READY:
            raise RuntimeError("session is already authenticated")
        self.phase = Phase.READY
        self.user_id = user_id

    # -- joins and delivery ---------------------------------------------------------------

    def begin_join(self, room_id: uuid.UUID) -> None:
        """Start buffering live events for ``room_id`` (a re-join keeps what was delivered)."""
        cursor = self.rooms.get(room_id)
        if cursor is None:
            self.rooms[room_id] = RoomCursor()
        else:
            cursor.joining = True

    def abort_join(self, room_id: uuid.UUID) -> None:
        """The join failed: forget the room unless it was joined before."""
        cursor = self.rooms.get(room_id)
        if cursor is None:
            return
        if cursor.backfilled_upto == 0 and not cursor.buffered and cursor.joining:
            del self.rooms[room_id]
        else:
            cursor.joining = False

    def end_join(self, room_id: uuid.UUID, backfill: Sequence[tuple[int, F]]) -> list[F]:
        """Finish a join: return backfill frames then buffered live frames, in order, once."""
        cursor = self.rooms[room_id]
        out: list[F] = []
        for message_id, frame in backfill:
            if message_id > cursor.backfilled_upto:
                out.append(frame)
                cursor.backfilled_upto = message_id
        for message_id, frame in cursor.buffered:
            if message_id > cursor.backfilled_upto:
                out.append(frame)
        cursor.buffered.clear()
        cursor.joining = False
        return out

    def on_live(self, room_id: uuid.UUID, message_id: int, frame: F) -> F | None:
        """Decide about one live event: deliver it now (returned), buffer it, or drop it."""
        cursor = self.rooms.get(room_id)
        if cursor is None:
            return None
        if message_id <= cursor.backfilled_upto:
            return None  # the backfill gave it already
        if cursor.joining:
            if len(cursor.buffered) >= self.max_buffered_per_room:
                raise OverflowError("live events buffered during join exceed the limit")
            cursor.buffered.append((message_id, frame))
            return None
        return frame

    def is_member_of(self, room_id: uuid.UUID) -> bool:
        return room_id in self.rooms
