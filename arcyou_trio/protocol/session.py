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
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

from arcyou_trio.protocol import codec
from arcyou_trio.protocol.ratelimit import TokenBucket
from arcyou_trio.protocol.requests import (
    OPS,
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


RECENT_IDS = 1024


@attrs.define
class RoomCursor(Generic[F]):
    """What one connection has been given of one room.

    ``floor``: nothing with an id at or below it is owed to the client (it came through a
    backfill, or was read before). ``recent``: ids above the floor delivered live, so that a
    re-join's backfill or a republished event does not deliver them twice. Live events may
    arrive out of id order (several workers), so a high-water mark alone would lose some.
    """

    joining: bool = True
    joined: bool = False
    floor: int = 0
    recent: set[int] = attrs.Factory(set)
    recent_order: deque[int] = attrs.Factory(deque)
    buffered: list[tuple[int, F]] = attrs.Factory(list)

    def seen(self, message_id: int) -> bool:
        return message_id <= self.floor or message_id in self.recent

    def take(self, message_id: int) -> bool:
        """Record a delivery; False if this id was delivered already."""
        if self.seen(message_id):
            return False
        self.recent.add(message_id)
        self.recent_order.append(message_id)
        if len(self.recent_order) > RECENT_IDS:
            self.recent.discard(self.recent_order.popleft())
        return True

    def raise_floor(self, message_id: int) -> None:
        if message_id > self.floor:
            self.floor = message_id
            self.recent = {i for i in self.recent if i > message_id}
            self.recent_order = deque(i for i in self.recent_order if i > message_id)


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
        op = op_of(obj)
        # Before auth, a known op other than auth is refused before its fields are looked at.
        if self.phase is not Phase.READY and op in OPS and op != "auth":
            raise RequestError(op, UNAUTHORIZED, temp_id_of(obj))
        request = validate(obj, self.limits)
        if isinstance(request, Auth):
            if self.phase is Phase.READY:
                raise RequestError(op, ALREADY_AUTHENTICATED)
            return request
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

    def abort_join(self, room_id: uuid.UUID) -> list[F]:
        """The join failed. A room never joined is forgotten (events buffered for it are
        dropped); a room joined before stays joined and gets its buffered events now."""
        cursor = self.rooms.get(room_id)
        if cursor is None:
            return []
        if not cursor.joined:
            del self.rooms[room_id]
            return []
        return self._flush(cursor)

    def end_join(
        self, room_id: uuid.UUID, backfill: Sequence[tuple[int, F]], *, read_upto: int = 0
    ) -> list[F]:
        """Finish a join: return backfill frames then buffered live frames, in order, once.

        ``backfill`` is the store's: every message of the room after the read mark
        ``read_upto``, oldest first, possibly cut short at the backfill limit. Ids grow in
        commit order within a room, so nothing at or below its last id (or the read mark) is
        owed to the client any more.
        """
        cursor = self.rooms[room_id]
        out: list[F] = []
        for message_id, frame in backfill:
            if cursor.take(message_id):
                out.append(frame)
        cursor.raise_floor(max(read_upto, backfill[-1][0] if backfill else 0))
        cursor.joined = True
        out.extend(self._flush(cursor))
        return out

    def _flush(self, cursor: RoomCursor[F]) -> list[F]:
        out = [frame for message_id, frame in cursor.buffered if cursor.take(message_id)]
        cursor.buffered.clear()
        cursor.joining = False
        return out

    def on_live(self, room_id: uuid.UUID, message_id: int, frame: F) -> F | None:
        """Decide about one live event: deliver it now (returned), buffer it, or drop it."""
        cursor = self.rooms.get(room_id)
        if cursor is None:
            return None
        if cursor.joining:
            if cursor.seen(message_id):
                return None
            if len(cursor.buffered) >= self.max_buffered_per_room:
                raise OverflowError("live events buffered during join exceed the limit")
            cursor.buffered.append((message_id, frame))
            return None
        return frame if cursor.take(message_id) else None

    def is_member_of(self, room_id: uuid.UUID) -> bool:
        return room_id in self.rooms
