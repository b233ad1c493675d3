"""Tests for per-room, per-connection delivery by sequence number (no network, no database).

:class:`~arcyou_trio.protocol.delivery.RoomStream` (and :class:`Session`, which drives one per
room through joins) is checked by plain tests of its edge cases and by hypothesis state machines
against a model "database": one room whose messages have seqs 1..N in commit order, some
soft-deleted. The machines commit messages; publish their live events in any order, duplicated
or lost; join (start) at any position with a first page read like the store reads it; fill
pages whenever ``gap()`` asks for one (reads and applications of pages race live events);
note the room's last seq; and, through :class:`Session`, abort first joins and re-joins.
Frames are the messages' seqs themselves, so what the client received is easy to check.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from arcyou_trio.protocol.delivery import MAX_HELD, RoomStream
from arcyou_trio.protocol.ratelimit import TokenBucket
from arcyou_trio.protocol.session import Session

USER = uuid.UUID(int=0xA11CE)
ROOM = uuid.UUID(int=1)

Pairs = list[tuple[int, int]]
#: The machines' frames: the seq, and whether it came live or from a database page.
Frame = tuple[int, str]
FramePairs = list[tuple[int, Frame]]


def _pairs(*seqs: int) -> Pairs:
    return [(seq, seq) for seq in seqs]


def _stream(max_held: int = MAX_HELD) -> RoomStream[int]:
    return RoomStream(max_held=max_held)


# -- the model database ------------------------------------------------------------------------


class Room:
    """One room's messages: seqs 1..``last`` (contiguous, commit order), some soft-deleted."""

    def __init__(self) -> None:
        self.last = 0
        self.deleted: set[int] = set()

    def commit(self) -> int:
        self.last += 1
        return self.last

    def page(self, after_seq: int, limit: int) -> tuple[Pairs, int, int]:
        """``(page, upto_seq, last_seq)`` as ``store.messages (its page query)`` computes them."""
        assert limit > 0
        seqs = [s for s in range(after_seq + 1, self.last + 1) if s not in self.deleted]
        seqs = seqs[:limit]
        # A full page covers up to its last message (more may follow); otherwise everything
        # after after_seq was read, and max(seq) counts deleted messages too.
        full = len(seqs) == limit
        return _pairs(*seqs), seqs[-1] if full else max(after_seq, self.last), self.last


def test_model_page_matches_the_store() -> None:
    room = Room()
    for _ in range(6):
        room.commit()
    room.deleted = {2, 5, 6}
    assert room.page(0, 2) == (_pairs(1, 3), 3, 6)
    assert room.page(3, 2) == (_pairs(4), 6, 6)
    assert room.page(4, 2) == ([], 6, 6)
    assert room.page(6, 2) == ([], 6, 6)
    assert Room().page(0, 3) == ([], 0, 0)


# -- RoomStream: edge cases --------------------------------------------------------------------


def test_live_events_are_held_until_started() -> None:
    stream = _stream()
    assert stream.on_live(1, 1) == []
    assert stream.on_live(2, 2) == []
    assert stream.gap() is None  # nowhere to fill from before the start is known
    assert stream.start(0) == [1, 2]
    assert stream.gap() is None
    assert stream.on_live(3, 3) == [3]


def test_duplicate_live_events_are_dropped() -> None:
    stream = _stream()
    stream.start(0)
    assert stream.on_live(1, 1) == [1]
    assert stream.on_live(1, 1) == []
    assert stream.on_live(3, 3) == []  # held
    assert stream.on_live(3, 3) == []  # duplicate of a held one: still held once
    assert stream.held == {3: 3}
    assert stream.on_live(2, 2) == [2, 3]
    assert stream.on_live(2, 2) == []
    assert stream.on_live(3, 3) == []
    assert stream.held == {}
    assert stream.gap() is None


def test_late_event_fills_a_gap_without_a_page() -> None:
    stream = _stream()
    stream.start(0)
    assert stream.on_live(1, 1) == [1]
    assert stream.on_live(3, 3) == []
    assert stream.on_live(4, 4) == []
    assert stream.gap() == 1
    # Two workers published out of order: 2 is only late.
    assert stream.on_live(2, 2) == [2, 3, 4]
    assert stream.gap() is None
    assert stream.delivered == 4


def test_page_applied_before_the_racing_live_events() -> None:
    stream = _stream()
    stream.start(0)
    stream.on_live(1, 1)
    stream.on_live(3, 3)
    assert stream.gap() == 1
    # The page (after 1) read 2..4; live 2 and 4 arrive after it was applied.
    assert stream.on_page(_pairs(2, 3, 4), 4, 4) == [2, 3, 4]
    assert stream.held == {}
    assert stream.on_live(2, 2) == []
    assert stream.on_live(4, 4) == []
    assert stream.on_live(5, 5) == [5]


def test_page_applied_after_the_racing_live_events() -> None:
    stream = _stream()
    stream.start(0)
    stream.on_live(1, 1)
    stream.on_live(3, 3)
    after = stream.gap()
    assert after == 1
    # The page after 1 is read (2..4), but live 2 and 4 overtake it.
    assert stream.on_live(2, 2) == [2, 3]
    assert stream.on_live(4, 4) == [4]
    assert stream.on_live(6, 6) == []  # 5 missing: held
    assert stream.on_page(_pairs(2, 3, 4), 4, 4) == []  # nothing new in the stale page
    assert stream.gap() == 4  # 5 and 6 still to fill
    assert stream.on_page(_pairs(5, 6), 6, 6) == [5, 6]  # held 6 is not sent twice
    assert stream.held == {}
    assert stream.gap() is None


def test_stale_full_page_behind_delivered_only_adds_what_is_new() -> None:
    stream = _stream()
    stream.start(0)
    stream.on_live(1, 1)
    stream.on_live(4, 4)
    assert stream.gap() == 1
    # A full page of 2 after 1 (2, 3) is read; live 2 arrives meanwhile.
    assert stream.on_live(2, 2) == [2]
    assert stream.on_page(_pairs(2, 3), 3, 4) == [3, 4]
    assert stream.gap() is None


def test_deleted_messages_are_covered_by_the_page() -> None:
    stream = _stream()
    stream.start(0)
    stream.on_live(1, 1)
    stream.on_live(5, 5)
    assert stream.gap() == 1
    # 2 and 4 are deleted: the page (read before 5) holds 3 only but covers up to 4.
    assert stream.on_page(_pairs(3), 4, 4) == [3, 5]
    assert stream.gap() is None
    # Everything deleted after the gap: the page is empty but still covers it.
    stream.on_live(8, 8)
    assert stream.gap() == 5
    assert stream.on_page([], 7, 7) == [8]
    assert stream.gap() is None


def test_full_page_leaves_the_rest_to_the_next_page() -> None:
    stream = _stream()
    assert stream.start(0) == []
    assert stream.on_page(_pairs(1, 2), 2, 5) == [1, 2]  # full page of 2; the room has 5
    assert stream.gap() == 2
    assert stream.on_page(_pairs(3, 4), 4, 5) == [3, 4]
    assert stream.gap() == 4
    assert stream.on_page(_pairs(5), 5, 5) == [5]
    assert stream.gap() is None


def test_empty_page_with_nothing_after_changes_nothing() -> None:
    stream = _stream()
    stream.start(3)
    assert stream.on_page([], 3, 3) == []
    assert (stream.delivered, stream.known, stream.gap()) == (3, 3, None)


def test_restart_with_a_lower_start_does_not_redeliver() -> None:
    stream = _stream()
    assert stream.start(2) == []
    assert stream.on_page(_pairs(3, 4), 4, 4) == [3, 4]
    assert stream.on_live(5, 5) == [5]
    # A re-join whose client says it has read up to 1 only: nothing is sent again.
    assert stream.start(1) == []
    assert stream.on_page(_pairs(2, 3, 4, 5), 5, 5) == []
    assert stream.delivered == 5
    assert stream.on_live(6, 6) == [6]


def test_restart_with_a_higher_start_skips() -> None:
    stream = _stream()
    stream.start(0)
    assert stream.on_live(1, 1) == [1]
    for seq in (3, 5, 7):
        assert stream.on_live(seq, seq) == []
    assert stream.gap() == 1
    # The client has read up to 5 (elsewhere): 2..5 are skipped, held 7 waits for 6.
    assert stream.start(5) == []
    assert stream.held == {7: 7}
    assert stream.gap() == 5
    assert stream.on_live(6, 6) == [6, 7]
    assert stream.gap() is None
    # A start beyond everything known: the client is up to date, nothing to fill.
    assert stream.start(9) == []
    assert (stream.delivered, stream.known, stream.gap()) == (9, 9, None)
    assert stream.on_live(9, 9) == []
    assert stream.on_live(10, 10) == [10]


def test_start_drops_held_events_the_client_has() -> None:
    stream = _stream()
    for seq in (2, 3, 5, 6):
        stream.on_live(seq, seq)
    assert stream.start(3) == []
    assert stream.held == {5: 5, 6: 6}
    assert stream.gap() == 3
    assert stream.on_live(4, 4) == [4, 5, 6]


def test_start_without_follow_on_leaves_held_events_to_the_page() -> None:
    stream: RoomStream[str] = RoomStream()
    for seq in (1, 2, 4):
        stream.on_live(seq, f"live {seq}")
    assert stream.start(0, follow_on=False) == []
    assert stream.held == {1: "live 1", 2: "live 2", 4: "live 4"}
    # The first page has 1 and 2 (as backfill); held 1 and 2 are dropped, 4 waits for 3.
    page = [(1, "page 1"), (2, "page 2")]
    assert stream.on_page(page, 2, 4) == ["page 1", "page 2"]
    assert stream.held == {4: "live 4"}
    assert stream.on_live(3, "live 3") == ["live 3", "live 4"]


def test_session_join_sends_page_messages_as_backfill_not_live() -> None:
    session = _session()
    session.begin_join(ROOM)
    for seq in (1, 2, 3, 4):
        session.on_live(ROOM, seq, f"live {seq}")
    page = [(1, "page 1"), (2, "page 2"), (3, "page 3")]
    # A full page of 3: held 4 follows on.
    out = session.end_join(ROOM, start_seq=0, page=page, upto_seq=3, last_seq=3)
    assert out == ["page 1", "page 2", "page 3", "live 4"]
    assert session.gap(ROOM) is None


def test_session_rejoin_keeps_delivering_live_before_the_page() -> None:
    session = _session()
    session.begin_join(ROOM)
    assert session.end_join(ROOM, start_seq=0, page=[], upto_seq=0, last_seq=0) == []
    session.begin_join(ROOM)
    assert session.on_live(ROOM, 1, "live 1") == ["live 1"]
    assert session.on_live(ROOM, 3, "live 3") == []
    page = [(1, "page 1"), (2, "page 2"), (3, "page 3")]
    assert session.end_join(ROOM, start_seq=0, page=page, upto_seq=3, last_seq=3) == [
        "page 2",
        "page 3",
    ]
    assert session.gap(ROOM) is None


def test_held_events_beyond_the_bound_are_dropped_then_refetched() -> None:
    stream = _stream(max_held=2)
    stream.start(0)
    for seq in (2, 3, 4, 5):
        assert stream.on_live(seq, seq) == []
    assert stream.held == {2: 2, 3: 3}  # 4 and 5 dropped...
    assert stream.known == 5  # ...but known to exist
    assert stream.on_live(1, 1) == [1, 2, 3]
    assert stream.gap() == 3
    assert stream.on_page(_pairs(4, 5), 5, 5) == [4, 5]
    assert stream.gap() is None


def test_held_bound_applies_before_the_start_too() -> None:
    stream = _stream(max_held=1)
    assert stream.on_live(1, 1) == []
    assert stream.on_live(2, 2) == []
    assert stream.held == {1: 1}
    assert stream.start(0) == [1]
    assert stream.gap() == 1
    assert stream.on_page(_pairs(2), 2, 2) == [2]


def test_note_known_opens_a_gap_and_never_lowers_known() -> None:
    stream = _stream()
    stream.start(0)
    stream.note_known(0)
    assert stream.gap() is None
    stream.note_known(2)  # the last live event was lost; a resync read the room's last seq
    assert stream.gap() == 0
    stream.note_known(1)
    assert stream.known == 2
    assert stream.on_page(_pairs(1, 2), 2, 2) == [1, 2]
    assert stream.gap() is None


def test_session_fill_claim_is_exclusive_per_room() -> None:
    session = _session()
    session.begin_join(ROOM)
    session.end_join(ROOM, start_seq=0, page=[], upto_seq=0, last_seq=0)
    other = uuid.UUID(int=2)
    session.begin_join(other)
    assert session.claim_fill(ROOM)
    assert not session.claim_fill(ROOM)
    assert session.claim_fill(other)
    session.release_fill(ROOM)
    assert session.claim_fill(ROOM)


def _session(max_held: int = MAX_HELD) -> Session[Any]:
    session: Session[Any] = Session(bucket=TokenBucket(1000, 1000), max_held_per_room=max_held)
    session.authenticated(USER)
    return session


# -- state machines --------------------------------------------------------------------------------


class DeliveryMachine(RuleBasedStateMachine):
    """One room, one connection, against the model :class:`Room`.

    With ``SESSION`` the room is driven through :class:`Session` (begin / abort / end join, the
    fill claim); without it, through a bare :class:`RoomStream` (start, on_page, ...), which
    may be started again at any time.

    The model does not predict what :class:`RoomStream` holds; it checks what the client got:
    ``frames``, strictly increasing, never one the client already has (at or below a start it
    was given, ``excused``), and none missing: every message up to the stream's ``delivered``
    that is neither deleted nor excused was sent. A liveness check (on a copy) then reads the
    room's last seq and fills until ``gap()`` is None: by then every message must have been
    sent.
    """

    SESSION = True
    MAX_HELD = MAX_HELD

    def __init__(self) -> None:
        super().__init__()
        self.room = Room()
        self.pending: list[int] = []  # committed, live event not yet published (or lost)
        self.published: list[int] = []  # live events published (may be published again)
        self.session = _session(self.MAX_HELD)
        self.bare: RoomStream[Frame] = RoomStream(max_held=self.MAX_HELD)
        self._forget_room()

    def _forget_room(self) -> None:
        """The connection's state for the room starts afresh (a first join was aborted)."""
        self.exists = not self.SESSION  # the session has a stream for the room
        self.started = False  # a join has ended (or the bare stream was started)
        self.joining = False
        self.join_read: tuple[int, FramePairs, int, int] | None = None  # the join's snapshot
        self.filling = False  # the fill claim is held
        self.fill_read: tuple[int, FramePairs, int, int] | None = None  # a fill page in flight
        self.frames: list[int] = []
        self.excused: set[int] = set()  # not sent: the client had them (below a start)
        self.last_delivered = 0
        self.seen = 0  # the highest seq this stream was told exists (live, page, resync)

    # -- access to the implementation --

    def _stream(self) -> RoomStream[Frame]:
        if self.SESSION:
            return self.session.rooms[ROOM]
        return self.bare

    def _gap(self) -> int | None:
        return self.session.gap(ROOM) if self.SESSION else self.bare.gap()

    def _page(self, after_seq: int, limit: int) -> tuple[FramePairs, int, int]:
        page, upto_seq, last_seq = self.room.page(after_seq, limit)
        return [(seq, (seq, "page")) for seq, _ in page], upto_seq, last_seq

    def _record(
        self, out: Sequence[Frame], what: str, page: Sequence[tuple[int, Frame]] = ()
    ) -> None:
        """Check and note frames sent; a message in ``page`` must be sent as read there."""
        in_page = dict(page)
        for frame in out:
            seq = frame[0]
            if seq in in_page:
                assert frame == in_page[seq], f"{what}: {seq} sent live, but it is in the page"
            top = self.frames[-1] if self.frames else 0
            assert seq > top, f"{what}: {seq} sent after {top} ({self.frames})"
            assert seq not in self.excused, f"{what}: {seq} sent, but the client had it"
            assert 1 <= seq <= self.room.last, f"{what}: {seq} was never committed"
            self.frames.append(seq)

    # -- the message source --

    @rule(count=st.integers(min_value=1, max_value=3))
    def commit(self, count: int) -> None:
        for _ in range(count):
            self.pending.append(self.room.commit())

    @precondition(lambda self: self.room.last > 0)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        self.room.deleted.add(data.draw(st.integers(1, self.room.last), label="deleted"))

    def _live(self, seq: int) -> None:
        if self.SESSION:
            before = self.session.rooms[ROOM].delivered if self.exists else None
            if self.exists:
                self.seen = max(self.seen, seq)
            out = self.session.on_live(ROOM, seq, (seq, "live"))
        else:
            before = self.bare.delivered
            self.seen = max(self.seen, seq)
            out = self.bare.on_live(seq, (seq, "live"))
        if not self.started:
            assert out == [], "nothing is sent before the join ends"
        elif before is not None and seq <= before:
            assert out == [], f"live {seq}: a duplicate (delivered {before}) was sent"
        elif before is not None and seq == before + 1:
            assert out[:1] == [(seq, "live")], f"live {seq}: the next event was not sent at once"
        self._record(out, f"live {seq}")

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def publish(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.pending) - 1), label="publish")
        seq = self.pending.pop(index)
        self.published.append(seq)
        self._live(seq)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1), label="lose"))

    @precondition(lambda self: self.published)
    @rule(data=st.data())
    def publish_again(self, data: st.DataObject) -> None:
        self._live(data.draw(st.sampled_from(self.published), label="duplicate"))

    @rule()
    def note_known(self) -> None:
        """A resync read the room's last seq (after the bus came back)."""
        if self.exists:
            self.seen = max(self.seen, self.room.last)
        if self.SESSION:
            self.session.note_known(ROOM, self.room.last)
        else:
            self.bare.note_known(self.room.last)

    # -- joins --

    @precondition(lambda self: self.SESSION and not self.joining)
    @rule()
    def begin_join(self) -> None:
        self.session.begin_join(ROOM)
        self.exists = True
        self.joining = True

    @precondition(lambda self: (self.joining or not self.SESSION) and self.join_read is None)
    @rule(data=st.data(), limit=st.integers(min_value=1, max_value=4))
    def read_join(self, data: st.DataObject, limit: int) -> None:
        """The join's snapshot: the client's start (any seq of the room) and the first page."""
        start_seq = data.draw(st.integers(0, self.room.last), label="start_seq")
        self.join_read = (start_seq, *self._page(start_seq, limit))

    @precondition(lambda self: self.join_read is not None)
    @rule(follow_on=st.booleans())
    def end_join(self, follow_on: bool) -> None:
        assert self.join_read is not None
        start_seq, page, upto_seq, last_seq = self.join_read
        self.join_read = None
        # The client has everything up to start_seq: what it was not sent of that is excused.
        self.excused |= set(range(1, start_seq + 1)) - set(self.frames)
        self.seen = max(self.seen, last_seq)
        if self.SESSION:
            out = self.session.end_join(
                ROOM, start_seq=start_seq, page=page, upto_seq=upto_seq, last_seq=last_seq
            )
        else:
            # start() may send held events before the page (follow_on) or leave them to it.
            out = self.bare.start(start_seq, follow_on=follow_on)
            out += self.bare.on_page(page, upto_seq, last_seq)
        # A join sends the messages of its page as backfill, even those also held live.
        self._record(out, f"join from {start_seq}", page if self.SESSION or not follow_on else ())
        assert self._stream().delivered >= start_seq
        self.started = True
        self.joining = False

    @precondition(lambda self: self.joining)
    @rule()
    def abort_join(self) -> None:
        self.session.abort_join(ROOM)
        if self.started:
            assert self.session.is_member_of(ROOM), "an aborted re-join forgot the room"
            self.joining = False
            self.join_read = None
        else:
            assert not self.session.is_member_of(ROOM), "an aborted first join kept the room"
            self._forget_room()

    # -- fills (one at a time, page after page, like the gateway's) --

    @precondition(lambda self: self.exists and not self.filling)
    @rule()
    def start_fill(self) -> None:
        if self._gap() is None:
            return
        if self.SESSION:
            assert self.session.claim_fill(ROOM)
            assert not self.session.claim_fill(ROOM), "two fills for one room"
        self.filling = True

    @precondition(lambda self: self.filling and self.fill_read is None)
    @rule(limit=st.integers(min_value=1, max_value=4))
    def read_fill(self, limit: int) -> None:
        after = self._gap()
        if after is None:
            if self.SESSION:
                self.session.release_fill(ROOM)
            self.filling = False
            return
        assert after == self._stream().delivered
        self.fill_read = (after, *self._page(after, limit))

    @precondition(lambda self: self.fill_read is not None)
    @rule()
    def apply_fill(self) -> None:
        assert self.fill_read is not None
        after, page, upto_seq, last_seq = self.fill_read
        self.fill_read = None
        assert self._stream().delivered >= after
        self.seen = max(self.seen, last_seq)
        if self.SESSION:
            out = self.session.on_page(ROOM, page, upto_seq, last_seq)
        else:
            out = self.bare.on_page(page, upto_seq, last_seq)
        self._record(out, f"page after {after}", page)

    # -- invariants --

    @invariant()
    def membership(self) -> None:
        if self.SESSION:
            assert self.session.is_member_of(ROOM) == self.exists
            assert (ROOM in self.session.rooms) == self.exists

    @invariant()
    def stream_state_is_sane(self) -> None:
        if not self.exists:
            return
        stream = self._stream()
        assert stream.started == self.started
        assert len(stream.held) <= self.MAX_HELD
        assert stream.delivered >= self.last_delivered, "delivered went down"
        self.last_delivered = stream.delivered
        assert stream.delivered <= self.room.last
        assert stream.known <= self.room.last
        assert all(seq > stream.delivered for seq in stream.held) or not self.started
        assert all(stream.held[seq] == (seq, "live") for seq in stream.held)
        # Whatever it was told exists (even events it could not hold) stays known.
        assert stream.known >= self.seen
        if self.started:
            assert stream.known >= stream.delivered
            if stream.gap() is None:
                assert stream.known <= stream.delivered
                assert stream.held == {}, "held events but no gap to fill"
            else:
                assert stream.gap() == stream.delivered
        else:
            assert stream.gap() is None
            assert stream.delivered == 0

    @invariant()
    def sent_exactly_up_to_delivered(self) -> None:
        if not self.exists:
            assert self.frames == []
            return
        delivered = self._stream().delivered
        assert all(seq <= delivered for seq in self.frames)
        missing = [
            seq
            for seq in range(1, delivered + 1)
            if seq not in self.room.deleted and seq not in self.excused and seq not in self.frames
        ]
        assert not missing, f"skipped {missing}; sent {self.frames}"

    @invariant()
    def filling_catches_up(self) -> None:
        """On a copy: once the room's last seq is known, fills deliver every message."""
        if not self.started:
            return
        session = copy.deepcopy(self.session)
        bare = copy.deepcopy(self.bare)
        stream = session.rooms[ROOM] if self.SESSION else bare
        frames = list(self.frames)
        stream.note_known(self.room.last)
        for _ in range(self.room.last + 1):
            after = stream.gap()
            if after is None:
                break
            frames += [seq for seq, _ in stream.on_page(*self._page(after, 2))]
        assert stream.gap() is None, "fills never closed the gap"
        assert stream.delivered == self.room.last
        assert frames == sorted(set(frames))
        expected = [
            seq
            for seq in range(1, self.room.last + 1)
            if seq not in self.room.deleted and seq not in self.excused
        ]
        assert set(expected) <= set(frames), (expected, frames)
        assert set(frames) <= set(expected) | self.room.deleted


class StreamMachine(DeliveryMachine):
    """A bare :class:`RoomStream`, few events held (dropping and refetching them)."""

    SESSION = False
    MAX_HELD = 3


class SmallHeldSessionMachine(DeliveryMachine):
    """Joins through :class:`Session` with few events held per room."""

    MAX_HELD = 3


def _settings(**kwargs: Any) -> settings:
    return settings(deadline=None, database=None, stateful_step_count=50, **kwargs)


TestStreamMachine = StreamMachine.TestCase
TestStreamMachine.settings = _settings(max_examples=300)

TestSessionMachine = DeliveryMachine.TestCase
TestSessionMachine.settings = _settings(max_examples=200)

TestSmallHeldSessionMachine = SmallHeldSessionMachine.TestCase
TestSmallHeldSessionMachine.settings = _settings(max_examples=300)
