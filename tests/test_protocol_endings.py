"""A room's stream ending for a client (its removal, the room's close) and the system messages
that say so: nothing after the end is delivered, whatever order live events and pages come in;
the end itself is. Pure (no network, no database)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from arcyou_trio.protocol import system
from arcyou_trio.protocol.delivery import RoomStream
from arcyou_trio.protocol.ratelimit import TokenBucket
from arcyou_trio.protocol.session import Session

ROOM = uuid.UUID(int=1)


def test_nothing_after_the_end_is_delivered() -> None:
    stream: RoomStream[int] = RoomStream()
    stream.start(0)
    assert stream.on_live(1, 1) == [1]
    stream.end_at(3)
    assert stream.on_live(3, 3) == []  # held: 2 is missing
    assert stream.on_live(4, 4) == []  # beyond the end: dropped
    assert stream.gap() == 1 and not stream.finished
    assert stream.on_page([(2, 2), (3, 3), (4, 4)], upto_seq=4, last_seq=5) == [2, 3]
    assert stream.finished and stream.gap() is None and stream.delivered == 3


def test_an_end_already_delivered_finishes_at_once() -> None:
    stream: RoomStream[int] = RoomStream()
    stream.start(5)
    stream.end_at(4)
    assert stream.finished and stream.on_live(6, 6) == []


@given(
    end=st.integers(1, 20),
    order=st.permutations(list(range(1, 21))),
    lost=st.sets(st.integers(1, 20)),
)
def test_any_order_delivers_exactly_up_to_the_end(
    end: int, order: list[int], lost: set[int]
) -> None:
    stream: RoomStream[int] = RoomStream()
    stream.start(0)
    stream.end_at(end)
    out: list[int] = []
    for seq in order:
        if seq not in lost:
            out += stream.on_live(seq, seq)
    while (after := stream.gap()) is not None:
        page = [(s, s) for s in range(after + 1, 21)][:5]
        out += stream.on_page(page, upto_seq=page[-1][0], last_seq=20)
    if not stream.finished:  # lost events and no gap known: the periodic resync's read
        stream.note_known(20)
        while (after := stream.gap()) is not None:
            page = [(s, s) for s in range(after + 1, 21)][:5]
            out += stream.on_page(page, upto_seq=page[-1][0], last_seq=20)
    assert out == list(range(1, end + 1)) and stream.finished


def test_session_leaves_a_finished_room() -> None:
    session: Session[int] = Session(bucket=TokenBucket(10, 100))
    session.begin_join(ROOM)
    session.end_join(ROOM, start_seq=0, page=[(1, 1)], upto_seq=1, last_seq=1)
    session.end_room(ROOM, 2)
    assert not session.finished(ROOM)
    assert session.on_live(ROOM, 2, 2) == [2] and session.finished(ROOM)
    session.leave(ROOM)
    assert not session.is_member_of(ROOM) and session.on_live(ROOM, 3, 3) == []


def test_which_system_messages_end_a_membership() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    assert system.ending_of("system", system.member_removed(bob, alice)) == bob
    assert system.ending_of("system", system.room_closed(alice)) is system.EVERYONE
    assert system.ending_of("system", system.member_added(bob, "owner", alice)) is None
    assert system.ending_of("text", system.room_closed(alice)) is None  # only system messages
    assert system.ending_of("system", {"event": "member.removed", "user_id": "x"}) is None
    assert system.ending_of("system", "not a dict") is None
