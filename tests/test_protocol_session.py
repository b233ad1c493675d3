"""Tests for the per-connection state machine ``arcyou_trio.protocol.session.Session``.

Covers ``receive()``: auth gating (``Unauthorized``, ``already authenticated``), binary frames,
invalid JSON, the per-frame rate limit (op and ``temp_id`` echoed), ``max_rooms``; and the join
side of delivery: ``begin_join``/``end_join``/``abort_join``/``on_live`` and the fill claim, by
plain tests. Frames are the messages' seqs themselves (``Session`` is generic over the frame
type), so the delivered sequence is easy to check. The per-room ordering itself
(:class:`~arcyou_trio.protocol.delivery.RoomStream`) is exercised exhaustively, with hypothesis
state machines, in ``test_protocol_delivery.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcyou_trio.protocol import codec
from arcyou_trio.protocol.ratelimit import TokenBucket
from arcyou_trio.protocol.requests import Ack, Auth, Join, Limits, RequestError, Send
from arcyou_trio.protocol.session import (
    ALREADY_AUTHENTICATED,
    BINARY_UNSUPPORTED,
    RATE_LIMITED,
    TOO_MANY_ROOMS,
    UNAUTHORIZED,
    Phase,
    Session,
)

USER = uuid.UUID(int=0xA11CE)
ROOM = uuid.UUID(int=1)
ROOM_B = uuid.UUID(int=2)
ROOM_C = uuid.UUID(int=3)


def _session(capacity: int = 1000, refill_ms: int = 1000, **kwargs: Any) -> Session[int]:
    return Session(bucket=TokenBucket(capacity, refill_ms), **kwargs)


def _ready(capacity: int = 1000, refill_ms: int = 1000, **kwargs: Any) -> Session[int]:
    session = _session(capacity, refill_ms, **kwargs)
    session.authenticated(USER)
    return session


def _frame(**obj: Any) -> str:
    return codec.dumps(obj)


def _rejected(session: Session[int], data: str | bytes, now_ms: float = 0.0) -> RequestError:
    with pytest.raises(RequestError) as info:
        session.receive(data, now_ms)
    return info.value


AUTH = _frame(op="auth", token="tok")
JOIN = _frame(op="join", room_id=str(ROOM))
SEND = _frame(op="send", room_id=str(ROOM), content={"text": "hi"}, temp_id="t-9")
ACK = _frame(op="ack", room_id=str(ROOM), last_read_message_id=4)


# -- authentication ------------------------------------------------------------------------------


def test_auth_is_accepted_before_authentication() -> None:
    session = _session()
    assert session.phase is Phase.AWAITING_AUTH
    assert session.receive(AUTH, 0.0) == Auth("tok")
    # receive() only validates; the gateway verifies the token and then calls authenticated().
    assert session.phase is Phase.AWAITING_AUTH
    assert session.user_id is None


def test_authenticated_switches_phase_once() -> None:
    session = _session()
    session.authenticated(USER)
    assert session.phase is Phase.READY
    assert session.user_id == USER
    with pytest.raises(RuntimeError):
        session.authenticated(uuid.UUID(int=99))
    assert session.user_id == USER


@pytest.mark.parametrize(
    ("frame", "op", "temp_id"),
    [(JOIN, "join", None), (SEND, "send", "t-9"), (ACK, "ack", None)],
)
def test_frames_before_auth_are_unauthorized(frame: str, op: str, temp_id: str | None) -> None:
    session = _session()
    err = _rejected(session, frame)
    assert (err.op, err.error, err.temp_id) == (op, UNAUTHORIZED, temp_id)
    assert session.phase is Phase.AWAITING_AUTH
    assert not session.rooms


def test_auth_can_be_retried_until_authenticated() -> None:
    session = _session()
    assert session.receive(AUTH, 0.0) == Auth("tok")
    assert session.receive(_frame(op="auth", token="other"), 1.0) == Auth("other")


def test_second_auth_after_authenticated_is_rejected() -> None:
    session = _ready()
    err = _rejected(session, AUTH)
    assert (err.op, err.error) == ("auth", ALREADY_AUTHENTICATED)


def test_requests_after_authentication() -> None:
    session = _ready()
    assert session.receive(JOIN, 0.0) == Join(ROOM)
    assert session.receive(SEND, 0.0) == Send(ROOM, {"text": "hi"}, temp_id="t-9")
    assert session.receive(ACK, 0.0) == Ack(ROOM, 4)


def test_validation_errors_pass_through_after_auth() -> None:
    session = _ready()
    err = _rejected(session, _frame(op="join"))
    assert (err.op, err.error) == ("join", "room_id required")
    err = _rejected(session, _frame(op="send", room_id=str(ROOM), content={}, temp_id="x"))
    assert (err.op, err.error, err.temp_id) == (
        "send",
        "content.text must be a non-empty string",
        "x",
    )


def test_session_limits_are_used_for_validation() -> None:
    session = _ready(limits=Limits(max_text_chars=3))
    err = _rejected(session, _frame(op="send", room_id=str(ROOM), content={"text": "abcd"}))
    assert err.error == "content.text too long (max 3 characters)"


# -- bad frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize("authenticated", [False, True])
@pytest.mark.parametrize("data", [b"", b"{}", JOIN.encode(), bytearray(b"\x00\x01")])
def test_binary_frames_are_not_supported(authenticated: bool, data: bytes) -> None:
    session = _ready() if authenticated else _session()
    err = _rejected(session, data)
    assert (err.op, err.error, err.temp_id) == ("error", BINARY_UNSUPPORTED, None)


def test_binary_frames_cost_a_token() -> None:
    session = _session(capacity=2)
    assert _rejected(session, b"x").error == BINARY_UNSUPPORTED
    assert _rejected(session, b"x").error == BINARY_UNSUPPORTED
    err = _rejected(session, b"x")
    assert (err.op, err.error) == ("error", RATE_LIMITED)
    err = _rejected(session, AUTH)
    assert (err.op, err.error) == ("auth", RATE_LIMITED)


@pytest.mark.parametrize("authenticated", [False, True])
@pytest.mark.parametrize(
    "data",
    ["", "{", '{"op": "join"', "NaN", "[" * 2000 + "]" * 2000, "'single'", '{"op":"send"} x'],
)
def test_invalid_json(authenticated: bool, data: str) -> None:
    session = _ready() if authenticated else _session()
    err = _rejected(session, data)
    assert (err.op, err.error, err.temp_id, err.room_id) == ("error", "invalid JSON", None, None)


# -- rate limit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fourth", "op", "temp_id"),
    [
        (JOIN, "join", None),
        (SEND, "send", "t-9"),
        (ACK, "ack", None),
        (AUTH, "auth", None),
        (_frame(op="nope", temp_id="q"), "nope", "q"),
        (_frame(op="x" * 33), "error", None),
        (_frame(op=5, temp_id=7), "error", None),
        ("{not json", "error", None),
        ("[]", "error", None),
    ],
)
def test_fourth_frame_at_same_instant_is_rate_limited(
    fourth: str, op: str, temp_id: str | None
) -> None:
    session = _ready(capacity=3, refill_ms=3000)
    for _ in range(3):
        assert session.receive(JOIN, 50.0) == Join(ROOM)
    err = _rejected(session, fourth, 50.0)
    assert (err.op, err.error, err.temp_id) == (op, RATE_LIMITED, temp_id)


def test_rate_limit_applies_before_auth_too() -> None:
    session = _session(capacity=3, refill_ms=3000)
    for _ in range(3):
        assert _rejected(session, JOIN).error == UNAUTHORIZED
    err = _rejected(session, SEND)
    assert (err.op, err.error, err.temp_id) == ("send", RATE_LIMITED, "t-9")


def test_rejected_frames_still_cost_a_token() -> None:
    session = _ready(capacity=3, refill_ms=3000)
    assert _rejected(session, "{").error == "invalid JSON"
    assert _rejected(session, _frame(op="join")).error == "room_id required"
    assert _rejected(session, AUTH).error == ALREADY_AUTHENTICATED
    assert _rejected(session, JOIN).error == RATE_LIMITED


def test_rate_limit_recovers_with_time() -> None:
    session = _ready(capacity=3, refill_ms=3000)
    for _ in range(3):
        session.receive(JOIN, 0.0)
    assert _rejected(session, JOIN, 999.0).error == RATE_LIMITED
    assert session.receive(JOIN, 1000.0) == Join(ROOM)
    assert _rejected(session, JOIN, 1000.0).error == RATE_LIMITED
    for _ in range(3):
        assert session.receive(JOIN, 10_000.0) == Join(ROOM)


printable_frames = st.one_of(
    st.text(max_size=40),
    st.builds(
        codec.dumps,
        st.dictionaries(
            st.sampled_from(["op", "room_id", "token", "content", "temp_id", "x"]),
            st.one_of(
                st.sampled_from(["auth", "join", "send", "ack", str(ROOM)]),
                st.none(),
                st.integers(-5, 5),
                st.fixed_dictionaries({"text": st.text(max_size=5)}),
            ),
        ),
    ),
    st.binary(max_size=10),
)


@settings(max_examples=200, deadline=None, database=None)
@given(
    frames=st.lists(st.tuples(printable_frames, st.floats(0, 500)), max_size=20),
    authenticated=st.booleans(),
)
def test_receive_only_returns_requests_or_raises_request_error(
    frames: list[tuple[str | bytes, float]], authenticated: bool
) -> None:
    session = _ready(capacity=5) if authenticated else _session(capacity=5)
    now = 0.0
    accepted = 0
    for data, delta in frames:
        now += delta
        try:
            request = session.receive(data, now)
        except RequestError as err:
            assert err.error
            assert err.op
            continue
        accepted += 1
        assert isinstance(request, Auth | Join | Send | Ack)
        # Before auth nothing but auth gets through; after it, auth never does.
        assert isinstance(request, Auth) is not authenticated
    # Never more accepted frames than the bucket allows (burst 5, 5 per second).
    assert accepted <= 5 + now * 5 / 1000 + 1e-6


# -- max rooms -----------------------------------------------------------------------------------


def _pairs(*seqs: int) -> list[tuple[int, int]]:
    """A page of messages whose frames are their seqs."""
    return [(seq, seq) for seq in seqs]


def _join(session: Session[int], room: uuid.UUID, *seqs: int, start_seq: int = 0) -> list[int]:
    """A whole join whose first page (not full) holds ``seqs``: the room's last seq is the
    highest of them."""
    request = session.receive(_frame(op="join", room_id=str(room)), 0.0)
    assert request == Join(room)
    session.begin_join(room)
    last = max(seqs, default=start_seq)
    return session.end_join(
        room, start_seq=start_seq, page=_pairs(*seqs), upto_seq=last, last_seq=last
    )


def test_max_rooms_enforced_but_rejoin_allowed() -> None:
    session = _ready(max_rooms=2)
    _join(session, ROOM)
    _join(session, ROOM_B)
    err = _rejected(session, _frame(op="join", room_id=str(ROOM_C)))
    assert (err.op, err.error, err.room_id) == ("join", TOO_MANY_ROOMS, str(ROOM_C))
    assert not session.is_member_of(ROOM_C)
    # Re-joining a room already joined does not need a new slot.
    assert session.receive(_frame(op="join", room_id=str(ROOM)), 0.0) == Join(ROOM)
    assert session.receive(_frame(op="join", room_id=str(ROOM_B).upper()), 0.0) == Join(ROOM_B)
    # Other requests for rooms beyond the limit are not affected by max_rooms.
    send = _frame(op="send", room_id=str(ROOM_C), content={"text": "x"})
    assert session.receive(send, 0.0) == Send(ROOM_C, {"text": "x"})


def test_rooms_being_joined_count_towards_max_rooms() -> None:
    session = _ready(max_rooms=1)
    session.begin_join(ROOM)
    err = _rejected(session, _frame(op="join", room_id=str(ROOM_B)))
    assert err.error == TOO_MANY_ROOMS
    # The room being joined may be asked for again (it holds the slot already).
    assert session.receive(JOIN, 0.0) == Join(ROOM)
    assert session.abort_join(ROOM) is None
    assert session.receive(_frame(op="join", room_id=str(ROOM_B)), 0.0) == Join(ROOM_B)


def test_aborted_rejoin_keeps_its_slot() -> None:
    session = _ready(max_rooms=1)
    _join(session, ROOM, 1)
    session.begin_join(ROOM)
    session.abort_join(ROOM)
    err = _rejected(session, _frame(op="join", room_id=str(ROOM_B)))
    assert err.error == TOO_MANY_ROOMS


# -- joins and delivery ----------------------------------------------------------------------------


def test_unknown_room_events_are_dropped() -> None:
    session = _ready()
    assert session.on_live(ROOM, 1, 1) == []
    assert session.on_page(ROOM, _pairs(1, 2), 2, 2) == []
    session.note_known(ROOM, 5)
    assert session.gap(ROOM) is None
    assert not session.claim_fill(ROOM)
    session.release_fill(ROOM)  # harmless
    assert not session.is_member_of(ROOM)
    assert not session.rooms


def test_end_join_gives_page_then_held_live_events_once() -> None:
    session = _ready()
    session.begin_join(ROOM)
    assert session.is_member_of(ROOM)
    # Live events race the backfill query: 3 and 4 are also in the page, 6 and 7 are not.
    for seq in (3, 4, 6, 7):
        assert session.on_live(ROOM, seq, seq) == []
    assert session.gap(ROOM) is None  # nothing to fill before the join knows where to start
    out = session.end_join(ROOM, start_seq=0, page=_pairs(1, 2, 3, 4, 5), upto_seq=5, last_seq=5)
    assert out == [1, 2, 3, 4, 5, 6, 7]
    assert session.gap(ROOM) is None
    assert session.on_live(ROOM, 5, 5) == []  # late duplicate of a page message
    assert session.on_live(ROOM, 7, 7) == []  # duplicate of a held one
    assert session.on_live(ROOM, 8, 8) == [8]
    assert session.on_live(ROOM_B, 9, 9) == []


def test_end_join_drops_held_events_the_client_already_has() -> None:
    session = _ready()
    session.begin_join(ROOM)
    for seq in (2, 4, 5):
        session.on_live(ROOM, seq, seq)
    # The client has read up to seq 4; the page (read before 5 was committed) is empty.
    assert session.end_join(ROOM, start_seq=4, page=[], upto_seq=4, last_seq=4) == [5]
    assert session.on_live(ROOM, 6, 6) == [6]


def test_end_join_with_empty_page_delivers_held_events() -> None:
    session = _ready()
    session.begin_join(ROOM)
    session.on_live(ROOM, 10, 10)
    session.on_live(ROOM, 11, 11)
    assert session.end_join(ROOM, start_seq=9, page=[], upto_seq=9, last_seq=9) == [10, 11]
    assert session.on_live(ROOM, 12, 12) == [12]
    assert session.gap(ROOM) is None


def test_end_join_with_a_full_page_leaves_a_gap_to_fill() -> None:
    session = _ready()
    session.begin_join(ROOM)
    # A page of 2 (full): it covers up to 2 only; the room has 5 messages.
    assert session.end_join(ROOM, start_seq=0, page=_pairs(1, 2), upto_seq=2, last_seq=5) == [1, 2]
    assert session.gap(ROOM) == 2
    assert session.claim_fill(ROOM)
    assert not session.claim_fill(ROOM)  # one fill per room at a time
    assert session.on_page(ROOM, _pairs(3, 4), 4, 5) == [3, 4]
    assert session.gap(ROOM) == 4
    assert session.on_live(ROOM, 6, 6) == []  # 5 not seen: held
    # 5 was deleted: the next page (read before 6 was committed) covers it without it, and
    # held 6 follows on.
    assert session.on_page(ROOM, [], 5, 5) == [6]
    assert session.gap(ROOM) is None
    session.release_fill(ROOM)
    assert session.claim_fill(ROOM)


def test_held_events_overflow_while_joining_are_refetched() -> None:
    session = _ready(max_held_per_room=2)
    session.begin_join(ROOM)
    for seq in (1, 2, 3):
        assert session.on_live(ROOM, seq, seq) == []
    assert len(session.rooms[ROOM].held) == 2  # 3 was dropped, but is known to exist
    # The join's page was read before anything was committed.
    assert session.end_join(ROOM, start_seq=0, page=[], upto_seq=0, last_seq=0) == [1, 2]
    assert session.gap(ROOM) == 2
    assert session.on_page(ROOM, _pairs(3), 3, 3) == [3]
    assert session.gap(ROOM) is None


def test_abort_join_forgets_a_never_joined_room() -> None:
    session = _ready()
    session.begin_join(ROOM)
    assert session.abort_join(ROOM) is None
    assert not session.is_member_of(ROOM)
    assert ROOM not in session.rooms
    assert session.on_live(ROOM, 1, 1) == []
    session.abort_join(ROOM_B)  # aborting a join that never began is harmless
    assert not session.rooms


def test_abort_join_forgets_never_joined_room_with_its_held_events() -> None:
    session = _ready()
    session.begin_join(ROOM)
    assert session.on_live(ROOM, 1, 1) == []
    assert session.on_live(ROOM, 2, 2) == []
    session.abort_join(ROOM)
    assert not session.is_member_of(ROOM)
    assert session.on_live(ROOM, 3, 3) == []
    # A fresh join starts from scratch: the events held by the aborted one are gone.
    session.begin_join(ROOM)
    assert session.rooms[ROOM].held == {}
    assert session.end_join(ROOM, start_seq=0, page=[], upto_seq=0, last_seq=0) == []
    assert session.on_live(ROOM, 1, 1) == [1]


def test_fresh_join_after_abort_starts_from_scratch() -> None:
    session = _ready()
    session.begin_join(ROOM)
    session.abort_join(ROOM)
    session.begin_join(ROOM)
    assert session.end_join(ROOM, start_seq=0, page=_pairs(1), upto_seq=1, last_seq=1) == [1]


def test_abort_join_keeps_a_previously_joined_room() -> None:
    session = _ready()
    assert _join(session, ROOM, 1, 2) == [1, 2]
    session.begin_join(ROOM)
    # A joined room keeps delivering during a re-join.
    assert session.on_live(ROOM, 3, 3) == [3]
    session.abort_join(ROOM)
    assert session.is_member_of(ROOM)
    assert session.on_live(ROOM, 4, 4) == [4]
    assert session.on_live(ROOM, 3, 3) == []


def test_abort_join_keeps_previously_joined_room_with_empty_page() -> None:
    session = _ready()
    assert _join(session, ROOM) == []
    assert session.on_live(ROOM, 1, 1) == [1]
    session.begin_join(ROOM)
    session.abort_join(ROOM)
    assert session.is_member_of(ROOM)
    assert session.on_live(ROOM, 2, 2) == [2]


def test_rejoin_does_not_redeliver() -> None:
    session = _ready()
    assert _join(session, ROOM, 1, 2) == [1, 2]
    assert session.on_live(ROOM, 3, 3) == [3]
    session.begin_join(ROOM)
    assert session.on_live(ROOM, 4, 4) == [4]
    # The re-join's page was read before 4 was committed; its start is lower than delivered.
    assert session.end_join(ROOM, start_seq=1, page=_pairs(2, 3), upto_seq=3, last_seq=3) == []
    assert session.on_live(ROOM, 4, 4) == []
    assert session.on_live(ROOM, 5, 5) == [5]


def test_rejoin_with_a_higher_start_skips_what_the_client_has() -> None:
    session = _ready()
    assert _join(session, ROOM, 1) == [1]
    assert session.on_live(ROOM, 4, 4) == []  # 2 and 3 are missing: held
    assert session.gap(ROOM) == 1
    session.begin_join(ROOM)
    # The client says it has read up to 4 (since_message_id): 2..4 are not sent.
    assert session.end_join(ROOM, start_seq=4, page=_pairs(5), upto_seq=5, last_seq=5) == [5]
    assert session.gap(ROOM) is None
    assert session.rooms[ROOM].held == {}


def test_failed_rejoin_does_not_reorder_live_events() -> None:
    session = _ready()
    delivered = _join(session, ROOM, 1)
    session.begin_join(ROOM)
    assert session.on_live(ROOM, 3, 3) == []  # 2 not seen yet: held
    session.abort_join(ROOM)
    delivered += session.on_live(ROOM, 2, 2)
    assert delivered == [1, 2, 3]
    session.begin_join(ROOM)
    delivered += session.end_join(ROOM, start_seq=0, page=_pairs(1, 2, 3), upto_seq=3, last_seq=3)
    assert delivered == [1, 2, 3]


def test_note_known_opens_a_gap_for_joined_rooms_only() -> None:
    session = _ready()
    session.begin_join(ROOM)
    session.note_known(ROOM, 3)
    assert session.gap(ROOM) is None  # not started yet
    assert session.end_join(ROOM, start_seq=0, page=_pairs(1), upto_seq=1, last_seq=1) == [1]
    assert session.gap(ROOM) == 1  # 2 and 3 exist (noted before the page was read): fill
    session.note_known(ROOM, 2)  # an older reading never lowers what is known
    assert session.gap(ROOM) == 1
    assert session.on_page(ROOM, _pairs(2, 3), 3, 3) == [2, 3]
    assert session.gap(ROOM) is None
