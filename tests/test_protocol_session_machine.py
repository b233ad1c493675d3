"""The per-connection protocol phase as a hypothesis state machine over the pure ``Session``.

``Session`` has no clock of its own: every frame comes with ``now_ms`` (the gateway passes
``trio.current_time()``), which only the token bucket reads. The machine drives one session
with its own integer-millisecond clock, the way one gateway connection drives it: a frame at a
time (a join's database step finishes, or fails, before the next frame is read), live events at
any time, the clock moved forward (long idles included) and, now and then, a frame stamped a
little in the past (a clock that went backwards). It verifies ``auth`` tokens as the gateway
does, with the dev-mode verifier (a token is the user's UUID).

Everything the session should do is modelled independently: the bucket in exact rational
arithmetic, the phase and user, the rooms joined or being joined, and per room the seqs the
client was given. After every step the session must agree with the model, and:

* the bucket's tokens stay in ``[0, capacity]``;
* over every window ``[t1, t2]`` of the clock, the frames that got a token number at most
  ``capacity + (t2 - t1) * capacity / refill_ms``;
* before authentication no frame other than ``auth`` is served and no room is ever entered;
* a joined room's events reach the client once each, in seq order, without gaps.

The auth timeout and the idle close are the connection's, not the session's: they are tested
through :class:`~arcyou_trio.gateway.connection.Connection` in ``test_gateway_memory.py``.
"""

from __future__ import annotations

import copy
import uuid
from fractions import Fraction
from typing import Any

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from arcyou_trio.auth import Verifier
from arcyou_trio.config import DEV_PLACEHOLDER
from arcyou_trio.errors import AuthError
from arcyou_trio.protocol import codec
from arcyou_trio.protocol.ratelimit import TokenBucket
from arcyou_trio.protocol.requests import Ack, Auth, Join, Request, RequestError, Send
from arcyou_trio.protocol.session import (
    ALREADY_AUTHENTICATED,
    BINARY_UNSUPPORTED,
    RATE_LIMITED,
    TOO_MANY_ROOMS,
    UNAUTHORIZED,
    Phase,
    Session,
)

VERIFIER = Verifier(DEV_PLACEHOLDER)
USERS = (uuid.UUID(int=0xA11CE), uuid.UUID("6f1e0a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b"))
ROOMS = tuple(uuid.UUID(int=n) for n in (1, 2, 3, 4))
EPS = 1e-6
MAX_ID = (1 << 63) - 1

# Every spelling of a user's UUID that uuid.UUID() reads is a good dev-mode token.
GOOD_SPELLINGS = (
    str,
    lambda u: str(u).upper(),
    lambda u: "{" + str(u) + "}",
    lambda u: u.urn,
    lambda u: u.hex,
)
BAD_TOKENS = ("not-a-uuid", "1234", str(USERS[0])[:-1], "x" * 40)

# How long the client waits before its next frame: mostly bursts, sometimes a pause.
WAITS = st.sampled_from([0, 0, 0, 1, 20, 300, 2000])

FRAME_KINDS = (
    "auth_good",
    "auth_bad",
    "join",
    "join_no_room",
    "send",
    "send_empty_text",
    "ack",
    "ack_bad_id",
    "unknown_op",
    "server_op",
    "not_an_object",
    "invalid_json",
    "binary",
)


@attrs.define
class RoomModel:
    started: bool = False  # end_join ran once: delivery follows seqs
    delivered: list[int] = attrs.Factory(list)  # what the client was given, in order


@attrs.define
class Expected:
    """What ``Session.receive`` must do with one frame: return ``request`` or raise ``error``."""

    request: Request | None = None
    error: tuple[str, str, str | None, str | None] | None = None  # op, error, temp_id, room_id


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.capacity = 1
        self.refill_ms = 1
        self.max_rooms = 1
        self.session: Session[int] = Session(bucket=TokenBucket(1, 1))
        # The model.
        self.now = 0
        self.stamp: int | None = None  # the bucket's updated_ms: the latest time it saw
        self.tokens = Fraction(0)
        self.phase = Phase.AWAITING_AUTH
        self.user: uuid.UUID | None = None
        self.rooms: dict[uuid.UUID, RoomModel] = {}
        self.joining: uuid.UUID | None = None  # a join between begin_join and end/abort
        self.room_seq = dict.fromkeys(ROOMS, 0)  # each room's last seq (committed messages)
        self.takes: list[int] = []  # the bucket time of every frame that got a token

    @initialize(
        capacity=st.integers(1, 8),
        refill_ms=st.integers(50, 5000),
        max_rooms=st.integers(1, 3),
        start=st.integers(0, 10**7),
    )
    def setup(self, capacity: int, refill_ms: int, max_rooms: int, start: int) -> None:
        self.capacity, self.refill_ms, self.max_rooms = capacity, refill_ms, max_rooms
        self.session = Session(bucket=TokenBucket(capacity, refill_ms), max_rooms=max_rooms)
        self.tokens = Fraction(capacity)
        self.now = start

    # -- the model's bucket -------------------------------------------------------------------

    def _refill(self, t: int) -> None:
        if self.stamp is not None and t > self.stamp:
            gained = Fraction((t - self.stamp) * self.capacity, self.refill_ms)
            self.tokens = min(Fraction(self.capacity), self.tokens + gained)
        if self.stamp is None or t > self.stamp:
            self.stamp = t

    def _take(self, t: int) -> bool:
        self._refill(t)
        if self.tokens >= 1:
            self.tokens -= 1
            assert self.stamp is not None
            self.takes.append(self.stamp)
            return True
        return False

    # -- frames ---------------------------------------------------------------------------------

    def _frame(
        self, kind: str, room: uuid.UUID, temp_id: str | None, user: uuid.UUID, spelling: int
    ) -> tuple[str | bytes, Any]:
        """The frame of ``kind`` and the JSON value it decodes to (None: not JSON)."""
        obj: Any
        if kind == "auth_good":
            obj = {"op": "auth", "token": GOOD_SPELLINGS[spelling](user)}
        elif kind == "auth_bad":
            obj = {"op": "auth", "token": BAD_TOKENS[spelling % len(BAD_TOKENS)]}
        elif kind == "join":
            obj = {"op": "join", "room_id": str(room)}
        elif kind == "join_no_room":
            obj = {"op": "join"}
        elif kind == "send":
            obj = {"op": "send", "room_id": str(room), "content": {"text": "hi"}}
        elif kind == "send_empty_text":
            obj = {"op": "send", "room_id": str(room), "content": {"text": "  "}}
        elif kind == "ack":
            obj = {"op": "ack", "room_id": str(room), "last_read_message_id": 7}
        elif kind == "ack_bad_id":
            obj = {"op": "ack", "room_id": str(room), "last_read_message_id": 0}
        elif kind == "unknown_op":
            obj = {"op": "typing", "room_id": str(room)}
        elif kind == "server_op":
            obj = {"op": "event", "room_id": str(room)}
        elif kind == "not_an_object":
            return codec.dumps(["op", "auth"]), ["op", "auth"]
        elif kind == "invalid_json":
            return '{"op": "auth", "token": ', None
        else:
            assert kind == "binary"
            return codec.dumps({"op": "auth", "token": str(user)}).encode(), None
        if temp_id is not None:
            obj["temp_id"] = temp_id
        return codec.dumps(obj), obj

    def _expect(self, kind: str, room: uuid.UUID, obj: Any, token_ok: bool) -> Expected:
        op = obj["op"] if isinstance(obj, dict) and obj["op"] != "event" else "error"
        temp_id = obj.get("temp_id") if isinstance(obj, dict) else None
        if not token_ok:
            return Expected(error=(op, RATE_LIMITED, temp_id, None))
        if kind == "binary":
            return Expected(error=("error", BINARY_UNSUPPORTED, None, None))
        if kind == "invalid_json":
            return Expected(error=("error", "invalid JSON", None, None))
        if kind == "not_an_object":
            return Expected(error=("error", "frame must be a JSON object", None, None))
        if kind in ("unknown_op", "server_op"):
            return Expected(error=(op, "unknown op", None, None))
        ready = self.phase is Phase.READY
        if op != "auth" and not ready:
            # Refused before its fields are even looked at.
            return Expected(error=(op, UNAUTHORIZED, temp_id, None))
        if kind in ("auth_good", "auth_bad"):
            if ready:
                return Expected(error=("auth", ALREADY_AUTHENTICATED, None, None))
            return Expected(request=Auth(obj["token"]))
        if kind == "join_no_room":
            # Validation errors echo the frame's temp_id whatever the op.
            return Expected(error=("join", "room_id required", temp_id, None))
        if kind == "join":
            if room not in self.rooms and len(self.rooms) >= self.max_rooms:
                return Expected(error=("join", TOO_MANY_ROOMS, None, str(room)))
            return Expected(request=Join(room))
        if kind == "send":
            return Expected(request=Send(room, {"text": "hi"}, temp_id=temp_id))
        if kind == "send_empty_text":
            return Expected(
                error=("send", "content.text must be a non-empty string", temp_id, None)
            )
        if kind == "ack":
            return Expected(request=Ack(room, 7))
        assert kind == "ack_bad_id"
        return Expected(
            error=("ack", f"last_read_message_id must be between 1 and {MAX_ID}", temp_id, None)
        )

    # -- rules ------------------------------------------------------------------------------------

    def _receive(self, kind: str, room: uuid.UUID, data: str | bytes, obj: Any, at: int) -> None:
        """Feed one frame stamped ``at`` and check the session's verdict against the model."""
        expected = self._expect(kind, room, obj, self._take(at))
        try:
            request = self.session.receive(data, float(at))
        except RequestError as err:
            got = (err.op, err.error, err.temp_id, err.room_id)
            assert got == expected.error, (kind, got, expected)
            assert err.reason is None
            return
        assert expected.error is None, (kind, request, expected)
        assert request == expected.request
        self._serve(request)

    @precondition(lambda self: self.joining is None)
    @rule(
        kind=st.sampled_from(FRAME_KINDS),
        room=st.sampled_from(ROOMS),
        temp_id=st.one_of(st.none(), st.sampled_from(["t-1", "retry-é"])),
        user=st.sampled_from(USERS),
        spelling=st.integers(0, len(GOOD_SPELLINGS) - 1),
        back_ms=st.one_of(st.just(0), st.just(0), st.integers(1, 3000)),
        wait=WAITS,
    )
    def frame(
        self,
        kind: str,
        room: uuid.UUID,
        temp_id: str | None,
        user: uuid.UUID,
        spelling: int,
        back_ms: int,
        wait: int,
    ) -> None:
        """Any frame from the client ``wait`` ms on, sometimes stamped ``back_ms`` in the past
        (a clock that went backwards)."""
        self.now += wait
        data, obj = self._frame(kind, room, temp_id, user, spelling)
        self._receive(kind, room, data, obj, self.now - back_ms)

    @precondition(lambda self: self.joining is None)
    @rule(
        good=st.booleans(),
        user=st.sampled_from(USERS),
        spelling=st.integers(0, len(GOOD_SPELLINGS) - 1),
        wait=WAITS,
    )
    def auth(self, good: bool, user: uuid.UUID, spelling: int, wait: int) -> None:
        """An auth frame, good token or bad (also after authentication), ``wait`` ms on."""
        self.now += wait
        kind = "auth_good" if good else "auth_bad"
        data, obj = self._frame(kind, ROOMS[0], None, user, spelling)
        self._receive(kind, ROOMS[0], data, obj, self.now)

    @precondition(lambda self: self.joining is None)
    @rule(room=st.sampled_from(ROOMS), wait=WAITS)
    def join(self, room: uuid.UUID, wait: int) -> None:
        """A join frame (refused before auth, beyond max_rooms, or begun), ``wait`` ms on."""
        self.now += wait
        data, obj = self._frame("join", room, None, USERS[0], 0)
        self._receive("join", room, data, obj, self.now)

    def _serve(self, request: Request) -> None:
        """What the gateway does with a valid request that changes the session."""
        if isinstance(request, Auth):
            try:
                user_id = VERIFIER.verify(request.token)
            except AuthError:
                assert request.token in BAD_TOKENS
                return  # replied Unauthorized; the client may try again
            assert user_id in USERS
            self.session.authenticated(user_id)
            self.phase, self.user = Phase.READY, user_id
        elif isinstance(request, Join):
            assert self.phase is Phase.READY
            self.session.begin_join(request.room_id)
            self.rooms.setdefault(request.room_id, RoomModel())
            self.joining = request.room_id

    @precondition(lambda self: self.joining is not None)
    @rule(data=st.data())
    def join_succeeds(self, data: st.DataObject) -> None:
        """The join's database step: the client has the room up to ``start_seq`` (its read
        mark, or since_message_id) and the first page holds the rest."""
        room = self.joining
        assert room is not None
        self.joining = None
        last = self.room_seq[room]
        start = data.draw(st.integers(0, last), label="start_seq")
        page = [(seq, seq) for seq in range(start + 1, last + 1)]
        out = self.session.end_join(room, start_seq=start, page=page, upto_seq=last, last_seq=last)
        model = self.rooms[room]
        if model.started:
            # A re-join: everything up to the room's last seq was delivered live already.
            assert out == []
        else:
            assert out == list(range(start + 1, last + 1))
            model.started = True
            model.delivered = [start, *out]  # start: what the client had before

    @precondition(lambda self: self.joining is not None)
    @rule()
    def join_fails(self) -> None:
        """The join's database step failed (not a member, database down)."""
        room = self.joining
        assert room is not None
        self.joining = None
        self.session.abort_join(room)
        if not self.rooms[room].started:
            del self.rooms[room]

    @rule(room=st.sampled_from(ROOMS))
    def live_event(self, room: uuid.UUID) -> None:
        """The room's next message arrives live (whoever is joined or not)."""
        self.room_seq[room] += 1
        seq = self.room_seq[room]
        out = self.session.on_live(room, seq, seq)
        model = self.rooms.get(room)
        if model is not None and model.started:
            assert out == [seq]
            model.delivered.extend(out)
        else:
            # Not a member (dropped), or still joining (held for end_join).
            assert out == []

    @rule(ms=st.one_of(st.integers(0, 50), st.integers(0, 6000), st.just(10**6)))
    def clock_advances(self, ms: int) -> None:
        """Time passes (from a few ms to a long idle): nothing in the session moves, but a frame
        now would find the bucket refilled (probed on a copy, which must agree with the model)."""
        self.now += ms
        probe = copy.deepcopy(self.session.bucket)
        took = probe.try_take(float(self.now))
        tokens = self.tokens
        if self.stamp is not None:
            gained = Fraction((self.now - self.stamp) * self.capacity, self.refill_ms)
            tokens = min(Fraction(self.capacity), tokens + gained)
        assert took is (tokens >= 1)
        assert abs(probe.tokens - float(tokens - 1 if took else tokens)) < EPS
        if ms >= self.refill_ms:
            # A whole refill period idle: a full burst is available again.
            assert took
            assert probe.tokens == self.capacity - 1

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def bucket_matches_the_model(self) -> None:
        bucket = self.session.bucket
        assert 0.0 <= bucket.tokens <= self.capacity
        assert abs(bucket.tokens - float(self.tokens)) < EPS
        assert bucket.updated_ms == (None if self.stamp is None else float(self.stamp))

    @invariant()
    def accepted_frames_fit_every_window(self) -> None:
        takes = self.takes
        for i, first in enumerate(takes):
            for j in range(i, len(takes)):
                allowed = self.capacity + (takes[j] - first) * self.capacity / self.refill_ms
                assert j - i + 1 <= allowed + EPS, (first, takes[j], j - i + 1, allowed)

    @invariant()
    def phase_and_user_match(self) -> None:
        assert self.session.phase is self.phase
        assert self.session.user_id == self.user
        if self.phase is Phase.AWAITING_AUTH:
            # Nothing before authentication ever enters a room.
            assert not self.session.rooms
            assert self.user is None

    @invariant()
    def rooms_match(self) -> None:
        assert set(self.session.rooms) == set(self.rooms)
        assert len(self.session.rooms) <= self.max_rooms
        for room, model in self.rooms.items():
            stream = self.session.rooms[room]
            assert stream.started is model.started
            assert self.session.is_member_of(room)
            assert self.session.gap(room) is None
            if model.started:
                # Once each, in seq order, no gap: start, start + 1, ..., the room's last seq.
                first = model.delivered[0]
                assert model.delivered == list(range(first, self.room_seq[room] + 1))
                assert stream.delivered == self.room_seq[room]
        for room in ROOMS:
            if room not in self.rooms:
                assert not self.session.is_member_of(room)


SessionMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_session_state_machine = SessionMachine.TestCase
