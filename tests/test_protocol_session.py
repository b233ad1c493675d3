"""Tests for the per-connection state machine ``arcyou_trio.protocol.session.Session``.

Covers ``receive()``: auth gating (``Unauthorized``, ``already authenticated``), binary frames,
invalid JSON, the per-frame rate limit (op and ``temp_id`` echoed), ``max_rooms``; and the join /
delivery logic: ``begin_join``/``end_join``/``on_live``/``abort_join``, checked by plain tests
and by a hypothesis ``RuleBasedStateMachine`` modelling one room (committed messages, live
publications possibly racing a join, capped backfills). Frames are the message ids themselves
(``Session`` is generic over the frame type), so the delivered sequence is easy to check.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

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


def _join(session: Session[int], room: uuid.UUID, backfill: list[int] | None = None) -> list[int]:
    request = session.receive(_frame(op="join", room_id=str(room)), 0.0)
    assert request == Join(room)
    session.begin_join(room)
    return session.end_join(room, [(i, i) for i in backfill or []])


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
    session.abort_join(ROOM)
    assert session.receive(_frame(op="join", room_id=str(ROOM_B)), 0.0) == Join(ROOM_B)


# -- joins and delivery: plain tests ---------------------------------------------------------------


def test_unknown_room_events_are_dropped() -> None:
    session = _ready()
    assert session.on_live(ROOM, 1, 1) is None
    assert not session.is_member_of(ROOM)


def test_end_join_gives_backfill_then_buffered_live_events_once() -> None:
    session = _ready()
    session.begin_join(ROOM)
    assert session.is_member_of(ROOM)
    # Live events race the backfill query: 3 and 4 are also in the backfill, 6 and 7 are not.
    for message_id in (3, 4, 6, 7):
        assert session.on_live(ROOM, message_id, message_id) is None
    assert session.end_join(ROOM, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]) == [1, 2, 3, 4, 5, 6, 7]
    assert session.on_live(ROOM, 5, 5) is None  # late duplicate of a backfilled message
    assert session.on_live(ROOM, 8, 8) == 8
    assert session.on_live(ROOM_B, 9, 9) is None


def test_end_join_with_empty_backfill_delivers_buffered_events() -> None:
    session = _ready()
    session.begin_join(ROOM)
    session.on_live(ROOM, 10, 10)
    session.on_live(ROOM, 11, 11)
    assert session.end_join(ROOM, []) == [10, 11]
    assert session.on_live(ROOM, 12, 12) == 12


def test_buffer_overflow_while_joining() -> None:
    session = _ready(max_buffered_per_room=2)
    session.begin_join(ROOM)
    session.on_live(ROOM, 1, 1)
    session.on_live(ROOM, 2, 2)
    with pytest.raises(OverflowError):
        session.on_live(ROOM, 3, 3)
    # Events the backfill already covers are not buffered and so do not overflow.
    session.end_join(ROOM, [(5, 5)])
    session.begin_join(ROOM)
    assert session.on_live(ROOM, 4, 4) is None


def test_abort_join_forgets_a_never_joined_room() -> None:
    session = _ready()
    session.begin_join(ROOM)
    session.abort_join(ROOM)
    assert not session.is_member_of(ROOM)
    assert ROOM not in session.rooms
    assert session.on_live(ROOM, 1, 1) is None
    session.abort_join(ROOM_B)  # aborting a join that never began is harmless
    assert not session.rooms


def test_abort_join_keeps_a_previously_joined_room() -> None:
    session = _ready()
    session.begin_join(ROOM)
    assert session.end_join(ROOM, [(1, 1), (2, 2)]) == [1, 2]
    session.begin_join(ROOM)
    session.abort_join(ROOM)
    assert session.is_member_of(ROOM)
    assert session.on_live(ROOM, 3, 3) == 3


def test_fresh_join_after_abort_starts_from_scratch() -> None:
    session = _ready()
    session.begin_join(ROOM)
    session.abort_join(ROOM)
    session.begin_join(ROOM)
    assert session.end_join(ROOM, [(1, 1)]) == [1]


def test_abort_join_forgets_never_joined_room_even_with_buffered_events() -> None:
    session = _ready()
    session.begin_join(ROOM)
    assert session.on_live(ROOM, 5, 5) is None
    session.abort_join(ROOM)
    assert not session.is_member_of(ROOM)
    assert session.on_live(ROOM, 6, 6) is None


def test_abort_join_keeps_previously_joined_room_with_empty_backfill() -> None:
    session = _ready()
    session.begin_join(ROOM)
    assert session.end_join(ROOM, []) == []
    assert session.on_live(ROOM, 1, 1) == 1
    session.begin_join(ROOM)
    session.abort_join(ROOM)
    assert session.is_member_of(ROOM)
    assert session.on_live(ROOM, 2, 2) == 2


def test_rejoin_does_not_redeliver_live_events() -> None:
    session = _ready()
    session.begin_join(ROOM)
    assert session.end_join(ROOM, [(1, 1), (2, 2)]) == [1, 2]
    assert session.on_live(ROOM, 3, 3) == 3
    session.begin_join(ROOM)
    assert session.end_join(ROOM, [(1, 1), (2, 2), (3, 3)]) == []


def test_failed_rejoin_does_not_reorder_live_events() -> None:
    session = _ready()
    session.begin_join(ROOM)
    delivered = session.end_join(ROOM, [(1, 1)])
    session.begin_join(ROOM)
    assert session.on_live(ROOM, 2, 2) is None
    session.abort_join(ROOM)
    frame = session.on_live(ROOM, 3, 3)
    assert frame == 3
    delivered.append(frame)
    session.begin_join(ROOM)
    delivered += session.end_join(ROOM, [])
    assert delivered == sorted(set(delivered))


# -- joins and delivery: state machine -----------------------------------------------------------


class DeliveryMachine(RuleBasedStateMachine):
    """One room, one connection. Messages are committed (ids ascending, with gaps) and later
    published live, in id order unless ``publish_out_of_order`` fires. A join snapshots the
    committed messages above a read mark, capped at a limit, as its backfill.

    The base machine only exercises what ``Session`` handles correctly: each successful join
    is a fresh one (no re-join of a joined room) and a first join is aborted only if no live
    event arrived meanwhile. ``FullDeliveryMachine`` lifts both restrictions.
    """

    FULL = False

    def __init__(self) -> None:
        super().__init__()
        self.session: Session[int] = _ready()
        self.committed: list[int] = []
        self.unpublished: list[int] = []
        self.delivered: list[int] = []
        self.in_order = True
        self.member = False  # a join of the room has succeeded (and not been forgotten)
        self.joining = False
        self.live_while_joining: list[int] = []

    # -- the message source --

    @rule(gap=st.integers(min_value=1, max_value=3), count=st.integers(min_value=1, max_value=3))
    def commit(self, gap: int, count: int) -> None:
        last = self.committed[-1] if self.committed else 0
        for i in range(count):
            message_id = last + gap + i
            self.committed.append(message_id)
            self.unpublished.append(message_id)

    @precondition(lambda self: self.unpublished)
    @rule()
    def publish_next(self) -> None:
        self._live(self.unpublished.pop(0))

    @precondition(lambda self: len(self.unpublished) > 1)
    @rule(data=st.data())
    def publish_out_of_order(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(min_value=1, max_value=len(self.unpublished) - 1))
        self.in_order = False
        self._live(self.unpublished.pop(index))

    def _live(self, message_id: int) -> None:
        frame = self.session.on_live(ROOM, message_id, message_id)
        if self.joining:
            assert frame is None, "live events are buffered while joining"
            self.live_while_joining.append(message_id)
        elif not self.member:
            assert frame is None, "no delivery for a room that is not joined"
        elif message_id > max(*self.delivered, getattr(self, "read_mark", 0), 0):
            assert frame == message_id, "a live event newer than anything delivered is delivered"
        if frame is not None:
            assert frame == message_id
            self.delivered.append(frame)

    # -- the connection --

    @precondition(lambda self: not self.joining and (self.FULL or not self.member))
    @rule()
    def begin_join(self) -> None:
        self.session.begin_join(ROOM)
        self.joining = True
        self.live_while_joining = []

    @precondition(lambda self: self.joining)
    @rule(
        read_mark=st.integers(min_value=0, max_value=40),
        limit=st.integers(min_value=1, max_value=8),
    )
    def end_join(self, read_mark: int, limit: int) -> None:
        # The store's backfill: the oldest ``limit`` messages after the read mark, ascending.
        # The read mark only moves forward (ack is monotonic in the database) and never past
        # the room's last committed message (the server refuses such an ack).
        read_mark = min(read_mark, max(self.committed, default=0))
        self.read_mark = read_mark = max(getattr(self, "read_mark", 0), read_mark)
        candidates = [i for i in self.committed if i > read_mark]
        backfill = candidates[:limit]
        fresh = not self.member
        out = self.session.end_join(ROOM, [(i, i) for i in backfill], read_upto=read_mark)
        self.delivered.extend(out)
        top = max(backfill, default=0)
        later_live = [i for i in self.live_while_joining if i > max(top, read_mark)]
        if fresh:
            assert out == backfill + later_live
        for message_id in later_live:
            assert self.delivered.count(message_id) == 1, message_id
        self.joining = False
        self.member = True
        self.live_while_joining = []

    @precondition(
        lambda self: (
            self.joining and (self.FULL or (not self.member and not self.live_while_joining))
        )
    )
    @rule()
    def abort_join(self) -> None:
        self.session.abort_join(ROOM)
        self.joining = False
        self.live_while_joining = []
        assert self.session.is_member_of(ROOM) == self.member

    # -- invariants --

    @invariant()
    def membership_matches_model(self) -> None:
        assert self.session.is_member_of(ROOM) == (self.member or self.joining)

    @invariant()
    def no_duplicates(self) -> None:
        assert len(set(self.delivered)) == len(self.delivered), self.delivered

    @invariant()
    def increasing_when_published_in_order(self) -> None:
        if self.in_order:
            assert all(a < b for a, b in zip(self.delivered, self.delivered[1:], strict=False)), (
                self.delivered
            )


class FullDeliveryMachine(DeliveryMachine):
    """Also re-joins a joined room and aborts any join, whatever arrived meanwhile."""

    FULL = True


TestDelivery = DeliveryMachine.TestCase
TestDelivery.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, database=None
)


def test_delivery_with_rejoins_and_aborts() -> None:
    run_state_machine_as_test(
        FullDeliveryMachine,
        settings=settings(
            max_examples=300,
            stateful_step_count=40,
            deadline=None,
            database=None,
            derandomize=True,
            report_multiple_bugs=False,
        ),
    )
