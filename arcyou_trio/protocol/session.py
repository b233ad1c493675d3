"""The per-connection protocol state machine, free of I/O.

A :class:`Session` turns each incoming frame into a validated request or a
:class:`~arcyou_trio.protocol.requests.RequestError` (rate limit, bad frame, wrong state), and
decides which room events a connection should receive and in what order. The gateway performs
the I/O a request needs (database, subscriptions) and reports the outcome back.

Delivery is by per-room sequence number (:mod:`arcyou_trio.protocol.delivery`): each joined
room's events reach the client in seq order, each once, with gaps filled from the database.
Join is a two-step affair because live events can arrive while the backfill query runs: between
:meth:`Session.begin_join` and :meth:`Session.end_join` live events for a new room are held, and
the join's start position then decides which of them the client still needs.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

from arcyou_trio.protocol import codec
from arcyou_trio.protocol.delivery import MAX_HELD, RoomStream
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


@attrs.define
class Session(Generic[F]):
    bucket: TokenBucket
    limits: Limits = attrs.Factory(Limits)
    max_rooms: int = 1000
    max_held_per_room: int = MAX_HELD
    phase: Phase = Phase.AWAITING_AUTH
    user_id: uuid.UUID | None = None
    rooms: dict[uuid.UUID, RoomStream[F]] = attrs.Factory(dict)

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
        """Start a join: a new room holds live events until :meth:`end_join`; a room joined
        before keeps delivering (a re-join only moves its start forward)."""
        if room_id not in self.rooms:
            self.rooms[room_id] = RoomStream(max_held=self.max_held_per_room)

    def abort_join(self, room_id: uuid.UUID) -> None:
        """The join failed: a room never joined is forgotten with the events it held."""
        stream = self.rooms.get(room_id)
        if stream is not None and not stream.started:
            del self.rooms[room_id]

    def end_join(
        self,
        room_id: uuid.UUID,
        *,
        start_seq: int,
        page: Sequence[tuple[int, F]],
        upto_seq: int,
        last_seq: int,
    ) -> list[F]:
        """Finish a join: the client has the room up to ``start_seq``; ``page`` is the first
        page after it (see :meth:`RoomStream.on_page`). Returns the frames to send, in order;
        if :meth:`gap` then says so, the rest must be read from the database."""
        stream = self.rooms[room_id]
        stream.start(start_seq, follow_on=False)
        return stream.on_page(page, upto_seq, last_seq)

    def on_live(self, room_id: uuid.UUID, seq: int, frame: F) -> list[F]:
        """A live event: the frames to send now (none if not joined, a repeat, or held)."""
        stream = self.rooms.get(room_id)
        if stream is None:
            return []
        return stream.on_live(seq, frame)

    def on_page(
        self, room_id: uuid.UUID, page: Sequence[tuple[int, F]], upto_seq: int, last_seq: int
    ) -> list[F]:
        stream = self.rooms.get(room_id)
        if stream is None:
            return []
        return stream.on_page(page, upto_seq, last_seq)

    def note_known(self, room_id: uuid.UUID, last_seq: int) -> None:
        stream = self.rooms.get(room_id)
        if stream is not None:
            stream.note_known(last_seq)

    def gap(self, room_id: uuid.UUID) -> int | None:
        """Where to read ``room_id`` from the database after, if messages are missing."""
        stream = self.rooms.get(room_id)
        return None if stream is None else stream.gap()

    def claim_fill(self, room_id: uuid.UUID) -> bool:
        """Become the one fill for ``room_id`` (False: one runs already, or not joined)."""
        stream = self.rooms.get(room_id)
        if stream is None or stream.filling:
            return False
        stream.filling = True
        return True

    def release_fill(self, room_id: uuid.UUID) -> None:
        stream = self.rooms.get(room_id)
        if stream is not None:
            stream.filling = False

    def end_room(self, room_id: uuid.UUID, seq: int) -> None:
        """The client's membership of ``room_id`` ended with the message ``seq``."""
        stream = self.rooms.get(room_id)
        if stream is not None:
            stream.end_at(seq)

    def finished(self, room_id: uuid.UUID) -> bool:
        """The room's stream ended and was delivered up to its end: leave it."""
        stream = self.rooms.get(room_id)
        return stream is not None and stream.finished

    def leave(self, room_id: uuid.UUID) -> None:
        self.rooms.pop(room_id, None)

    def is_member_of(self, room_id: uuid.UUID) -> bool:
        return room_id in self.rooms
