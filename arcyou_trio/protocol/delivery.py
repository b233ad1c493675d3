"""What one connection has been given of one room, by per-room sequence number (pure).

Every message has a ``seq``: 1, 2, 3, ... within its room, drawn under the room's lock in the
send transaction, so seq order is commit order and a missing number is a message not yet seen.
A :class:`RoomStream` keeps ``delivered``, the highest seq handed to the client (or known to be
read by it), and delivers strictly ``delivered + 1`` next:

* a live event at or below ``delivered`` is a duplicate (Redis, or a worker, sent it twice):
  dropped;
* the next one is delivered, with any held events that now follow on;
* one further ahead leaves a *gap*: it is held, and :meth:`RoomStream.gap` says from where the
  gateway must fill from the database (after a short wait, in case the missing event is only
  late: two workers may publish out of order).

Pages read from the database (:meth:`RoomStream.on_page`) go through the same rule, so live
events and database pages may race in any order and the client still sees each message once, in
order. Until a join knows where the client starts (:meth:`RoomStream.start`), live events are
only held. Held events are bounded; beyond the bound they are dropped and fetched from the
database instead (``known`` remembers that they exist).

A stream can *end* (:meth:`RoomStream.end_at`): the client's membership ended with the message
of that seq (its removal, the room's close). Nothing after it is delivered, and once everything
up to it was, :attr:`RoomStream.finished` says the connection should leave the room.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

F = TypeVar("F")

#: Live events held per room while a gap is filled (beyond: re-read from the database).
MAX_HELD = 10_000


@attrs.define
class RoomStream(Generic[F]):
    started: bool = False  # a join has said where this client starts
    delivered: int = 0  # highest seq given to the client, or known read by it
    known: int = 0  # highest seq known to exist (live events seen, the room's last seq read)
    filling: bool = False  # a fill from the database is running for this room
    max_held: int = MAX_HELD
    held: dict[int, F] = attrs.Factory(dict)
    ends_at: int | None = None  # the last seq this client gets of the room

    def end_at(self, seq: int) -> None:
        """The client gets nothing of this room after ``seq``."""
        if self.ends_at is None or seq < self.ends_at:
            self.ends_at = seq
        for later in [s for s in self.held if s > seq]:
            del self.held[later]

    @property
    def finished(self) -> bool:
        """The stream ended and everything up to its end was delivered."""
        return self.ends_at is not None and self.delivered >= self.ends_at

    def _beyond(self, seq: int) -> bool:
        return self.ends_at is not None and seq > self.ends_at

    def start(self, start_seq: int, *, follow_on: bool = True) -> list[F]:
        """The client has everything up to ``start_seq``; deliver held events that follow on
        from it (unless ``follow_on`` is False: a join applies its first page before them, so
        that a message in both comes as backfill)."""
        self.delivered = max(self.delivered, start_seq)
        self.started = True
        self.known = max(self.known, self.delivered)
        for seq in [s for s in self.held if s <= self.delivered]:
            del self.held[seq]
        return self._follow_on() if follow_on else []

    def on_live(self, seq: int, frame: F) -> list[F]:
        """A live event: the frames to send now (possibly none)."""
        if self._beyond(seq):
            return []
        self.known = max(self.known, seq)
        if self.started:
            if seq <= self.delivered:
                return []
            if seq == self.delivered + 1:
                self.delivered = seq
                return [frame, *self._follow_on()]
        if len(self.held) < self.max_held:
            self.held[seq] = frame
        return []

    def on_page(self, page: Sequence[tuple[int, F]], upto_seq: int, last_seq: int) -> list[F]:
        """Messages read from the database after ``delivered``: ``page`` in seq order, covering
        everything up to ``upto_seq`` (deleted messages are covered but absent); ``last_seq`` is
        the room's last seq when it was read."""
        self.known = max(self.known, last_seq)
        out: list[F] = []
        if self.ends_at is not None:
            page = [(seq, frame) for seq, frame in page if seq <= self.ends_at]
            upto_seq = min(upto_seq, self.ends_at)
        for seq, frame in page:
            if seq > self.delivered:
                out.append(frame)
                self.delivered = seq
        if upto_seq > self.delivered:
            self.delivered = upto_seq
        for seq in [s for s in self.held if s <= self.delivered]:
            del self.held[seq]
        out.extend(self._follow_on())
        return out

    def note_known(self, last_seq: int) -> None:
        """The room has messages up to ``last_seq`` (read from the database)."""
        self.known = max(self.known, last_seq)

    def gap(self) -> int | None:
        """The seq to fill after, when messages known to exist were not delivered."""
        known = self.known if self.ends_at is None else min(self.known, self.ends_at)
        if self.started and known > self.delivered:
            return self.delivered
        return None

    def _follow_on(self) -> list[F]:
        out: list[F] = []
        while (frame := self.held.pop(self.delivered + 1, None)) is not None:
            out.append(frame)
            self.delivered += 1
        return out
