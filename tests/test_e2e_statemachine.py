"""Stateful end-to-end test: random auth/join/send/ack sequences over real WebSockets.

A hypothesis :class:`~hypothesis.stateful.RuleBasedStateMachine` drives real
:class:`~arcyou_trio.client.ChatClient` connections to a gateway and an outbox worker started
with ``running_system`` and checks every reply and every event against a small model of the
seed protocol (section 5), in both pub/sub modes. Next to it, focused tests of the rate limit
over a real connection, of re-join deduplication, and of U+0000 in a send (refused by validation).

How trio and hypothesis meet: the test is a trio test that starts the system, then runs the
state machine in a worker thread (``trio.to_thread.run_sync``); every rule calls back into trio
with ``trio.from_thread.run``. Each client lives in its own task of a test-owned nursery until the
machine's teardown releases it, because a context manager that owns a nursery cannot be entered
and exited by two different ``from_thread.run`` calls.

Each example gets fresh users and rooms: room A (users 0 and 1), room B (users 0 and 2) and a
room id that does not exist. A hidden *watcher* connection, a member of A and B joined to both
from the start, tells when the gateway has fanned out every message sent so far (fan-out hands
an event to all local members synchronously, so once the watcher has it, everybody has it
queued). Checking events then needs no sleeps: settle on the watcher, send each connection one
request as a barrier (replies and events share one ordered queue per connection) and compare
what arrived before the barrier's reply with the model, exactly.

Some server behaviours the model follows on purpose (read from the server code):

- Before ``auth``, a ``join``/``send``/``ack`` gets ``Unauthorized`` whatever its fields are;
  frames that are not requests at all (bad JSON, unknown op, ...) get their own error.
- An ``ack`` succeeds for any id up to the room's last message id (ids are global, so an id of
  another room can be acked) and the read mark only moves forward.
- A join is tested only after the watcher has settled, so no live event of an earlier message
  can race the join and the backfill is exactly determined.
- A re-join's backfill is the unread messages the connection has not been given yet (the
  gateway remembers per connection what it delivered, live or by backfill).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import hypothesis
import pytest
import trio
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from arcyou_trio.client import ChatClient
from arcyou_trio.config import PubSubMode, Settings
from tests.conftest import System, make_room, running_system

T = TypeVar("T")

# Wire strings, pinned here rather than imported: the test guards the protocol.
UNAUTHORIZED = "Unauthorized"
FORBIDDEN = "Forbidden: not a member"
ALREADY = "already authenticated"
AHEAD = "last_read_message_id is ahead of the room's last message"
RATE_LIMITED = "Rate limit exceeded"
UNAVAILABLE = "Service temporarily unavailable"

SETTLE_TIMEOUT_S = 5.0

ROOM_KEYS = ("A", "B")
ANY_ROOM = st.sampled_from(["A", "A", "B", "B", "X"])  # X: a room id that does not exist
CONN = st.integers(min_value=0, max_value=2)
SAFE_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
TEXT = st.text(SAFE_CHARS, min_size=1, max_size=12).filter(lambda s: s.strip() != "")
TEMP_ID = st.none() | st.text(SAFE_CHARS, min_size=1, max_size=8)

# Frames that are wrong whatever the state, and the reply each gets.
GARBAGE: dict[str, tuple[str | bytes, dict[str, Any]]] = {
    "invalid_json": ("{not json", {"op": "error", "success": False, "error": "invalid JSON"}),
    "array": ("[1, 2]", {"op": "error", "success": False, "error": "frame must be a JSON object"}),
    "string": ('"hi"', {"op": "error", "success": False, "error": "frame must be a JSON object"}),
    "no_op": ("{}", {"op": "error", "success": False, "error": "op required"}),
    "unknown_op": ('{"op": "dance"}', {"op": "dance", "success": False, "error": "unknown op"}),
    "binary": (
        b"\x00\x01",
        {"op": "error", "success": False, "error": "binary frames are not supported"},
    ),
}

# Send variants: how the frame is broken, and the validation error it gets (None: valid).
SEND_VARIANTS: dict[str, str | None] = {
    "valid": None,
    "missing_room_id": "room_id required",
    "bad_room_id": "room_id must be a UUID",
    "blank_text": "content.text must be a non-empty string",
    "content_not_object": "content must be an object",
}
SEND_VARIANT = st.sampled_from(["valid"] * 6 + [k for k in SEND_VARIANTS if k != "valid"])

BARRIER_FRAME = {"op": "barrier"}
BARRIER_REPLY = {"op": "barrier", "success": False, "error": "unknown op"}


# -- holding clients open across from_thread.run calls ------------------------------------------


@attrs.define
class Held:
    """A client kept open by its own task until ``release`` is set; ``done`` once closed."""

    client: ChatClient
    release: trio.Event
    done: trio.Event


async def hold_client(url: str, *, task_status: trio.TaskStatus[Held]) -> None:
    done = trio.Event()
    try:
        async with ChatClient.connect(url) as client:
            held = Held(client, trio.Event(), done)
            task_status.started(held)
            await held.release.wait()
    finally:
        done.set()


# -- the model ------------------------------------------------------------------------------------


@attrs.define
class Msg:
    id: int
    seq: int
    user: uuid.UUID
    text: str
    temp_id: str | None
    created_at: str | None = None  # learnt from the first event that carries it


@attrs.define
class RoomView:
    """What one connection that joined one room has been given of it."""

    delivered: set[int] = attrs.Factory(set)
    # Live events expected since the last check, in order.
    expected_live: list[int] = attrs.Factory(list)


@attrs.define
class ConnModel:
    held: Held
    own_user: uuid.UUID
    user: uuid.UUID | None = None  # set once authenticated
    rooms: dict[str, RoomView] = attrs.Factory(dict)

    @property
    def client(self) -> ChatClient:
        return self.held.client


def check_reply_shape(reply: Any) -> None:
    assert isinstance(reply, dict), reply
    assert isinstance(reply.get("op"), str), reply
    assert isinstance(reply.get("success"), bool), reply
    if not reply["success"]:
        assert isinstance(reply.get("error"), str) and reply["error"], reply


def expect(reply: dict[str, Any], expected: dict[str, Any]) -> None:
    check_reply_shape(reply)
    assert reply == expected


def with_temp_id(reply: dict[str, Any], temp_id: str | None) -> dict[str, Any]:
    return reply if temp_id is None else {**reply, "temp_id": temp_id}


def build_machine(system: System, nursery: trio.Nursery) -> type[RuleBasedStateMachine]:
    db_url = system.settings.database_url

    class ChatMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.failed = False
            users = [uuid.uuid4() for _ in range(3)]
            watcher_user = uuid.uuid4()
            self.room_ids = {
                "A": make_room(db_url, users[0], users[1], watcher_user, name="A"),
                "B": make_room(db_url, users[0], users[2], watcher_user, name="B"),
                "X": uuid.uuid4(),
            }
            self.key_of = {str(v): k for k, v in self.room_ids.items()}
            self.members: dict[str, set[uuid.UUID]] = {
                "A": {users[0], users[1]},
                "B": {users[0], users[2]},
                "X": set(),
            }
            self.msgs: dict[str, list[Msg]] = {k: [] for k in self.room_ids}
            self.by_id: dict[int, Msg] = {}
            self.last_read: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
            self.watcher_seen = dict.fromkeys(ROOM_KEYS, 0)
            self.watcher: Held | None = None
            self.conns: list[ConnModel] = []
            self.held: list[Held] = []  # every client opened, to close them all at the end
            self.run(self._open, users, watcher_user)

        # -- plumbing --------------------------------------------------------------------

        def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
            try:
                return trio.from_thread.run(fn, *args)
            except BaseException:
                self.failed = True
                raise

        async def _open(self, users: list[uuid.UUID], watcher_user: uuid.UUID) -> None:
            with trio.fail_after(SETTLE_TIMEOUT_S):
                self.watcher = await nursery.start(hold_client, system.url)
                self.held.append(self.watcher)
                for user in users:
                    self.conns.append(ConnModel(await self._connect(), user))
                w = self.watcher.client
                assert (await w.auth(watcher_user))["success"] is True
                for key in ROOM_KEYS:
                    assert (await w.join(self.room_ids[key]))["success"] is True

        async def _connect(self) -> Held:
            held: Held = await nursery.start(hold_client, system.url)
            self.held.append(held)
            return held

        async def _close(self) -> None:
            for h in self.held:
                h.release.set()
            with trio.fail_after(SETTLE_TIMEOUT_S):
                for h in self.held:
                    await h.done.wait()

        def teardown(self) -> None:
            try:
                if not self.failed:
                    self.run(self._final_check)
            finally:
                trio.from_thread.run(self._close)

        # -- event checks ----------------------------------------------------------------

        def check_event(self, event: dict[str, Any], key: str, msg: Msg, source: str) -> None:
            assert event["op"] == "event", event
            assert event["type"] == "message.created", event
            assert event["roomId"] == str(self.room_ids[key]), event
            assert event["source"] == source, event
            assert isinstance(event["timestamp"], str), event
            message = event["message"]
            created_at = message.get("created_at")
            assert isinstance(created_at, str) and created_at.endswith("Z"), event
            if msg.created_at is None:
                msg.created_at = created_at
            expected: dict[str, Any] = {
                "id": msg.id,
                "seq": msg.seq,
                "user_id": str(msg.user),
                "type": "text",
                "content": {"text": msg.text},
                "created_at": msg.created_at,
            }
            if msg.temp_id is not None:
                expected["temp_id"] = msg.temp_id
            assert message == expected, event

        async def _settle(self) -> None:
            """Wait until the watcher has every message sent so far, each once and in order."""
            assert self.watcher is not None
            with trio.fail_after(SETTLE_TIMEOUT_S):
                while any(self.watcher_seen[k] < len(self.msgs[k]) for k in ROOM_KEYS):
                    event = await self.watcher.client.next_event()
                    key = self.key_of[event["roomId"]]
                    assert self.watcher_seen[key] < len(self.msgs[key]), event
                    self.check_event(event, key, self.msgs[key][self.watcher_seen[key]], "live")
                    self.watcher_seen[key] += 1

        async def _barrier(self, client: ChatClient) -> list[dict[str, Any]]:
            """Every event queued for ``client`` before now (replies and events share a queue)."""
            with trio.fail_after(SETTLE_TIMEOUT_S):
                expect(await client.request(BARRIER_FRAME), BARRIER_REPLY)
            return client.pending_events()

        async def _verify_live(self, conn: ConnModel) -> None:
            """After settling: the connection got exactly the live events the model expects."""
            by_room: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for event in await self._barrier(conn.client):
                by_room[event["roomId"]].append(event)
            for key in ROOM_KEYS:
                view = conn.rooms.get(key)
                expected = view.expected_live if view else []
                got = by_room.pop(str(self.room_ids[key]), [])
                assert [e["message"]["id"] for e in got] == expected, (key, got)
                for event in got:
                    self.check_event(event, key, self.by_id[event["message"]["id"]], "live")
                if view:
                    view.delivered.update(expected)
                    view.expected_live.clear()
            assert not by_room, f"events of rooms never joined: {dict(by_room)}"

        async def _check_all(self) -> None:
            await self._settle()
            for conn in self.conns:
                await self._verify_live(conn)

        async def _final_check(self) -> None:
            await self._check_all()
            assert self.watcher is not None
            assert await self._barrier(self.watcher.client) == []

        # -- rules -----------------------------------------------------------------------

        @initialize(
            anonymous=st.integers(min_value=0, max_value=5),
            join=st.lists(st.booleans(), min_size=3, max_size=3),
        )
        def start(self, anonymous: int, join: list[bool]) -> None:
            """Start connections authenticated (in half the examples, one not) and some joined
            to their first room, so that most steps do real work."""
            for i, (conn, do_join) in enumerate(zip(self.conns, join, strict=True)):
                if i == anonymous:
                    continue
                self.run(self._auth, conn, "own")
                if do_join:
                    first = next(k for k in ROOM_KEYS if conn.own_user in self.members[k])
                    self.run(self._join, conn, first)

        @rule()
        def check_events(self) -> None:
            self.run(self._check_all)

        @rule(c=CONN, rejoin=st.booleans())
        def reconnect(self, c: int, rejoin: bool) -> None:
            """Replace a connection by a new one of the same user, authenticated, and maybe
            joined again to the user's rooms: the backfill is what the user has not read."""
            self.run(self._reconnect, c, rejoin)

        async def _reconnect(self, c: int, rejoin: bool) -> None:
            await self._check_all()  # the old connection got everything it was owed
            old = self.conns[c]
            old.held.release.set()
            with trio.fail_after(SETTLE_TIMEOUT_S):
                await old.held.done.wait()
                conn = self.conns[c] = ConnModel(await self._connect(), old.own_user)
            await self._auth(conn, "own")
            for key in ROOM_KEYS if rejoin else ():
                if conn.own_user in self.members[key]:
                    await self._join(conn, key)

        @rule(c=CONN, token=st.sampled_from(["own", "own", "own", "stranger", "not_a_uuid"]))
        def auth(self, c: int, token: str) -> None:
            self.run(self._auth, self.conns[c], token)

        async def _auth(self, conn: ConnModel, token: str) -> None:
            user = {"own": conn.own_user, "stranger": uuid.uuid4()}.get(token)
            reply = await conn.client.request(
                {"op": "auth", "token": str(user) if user else "not-a-uuid"}
            )
            if conn.user is not None:
                expect(reply, {"op": "auth", "success": False, "error": ALREADY})
            elif user is None:
                expect(reply, {"op": "auth", "success": False, "error": UNAUTHORIZED})
            else:
                expect(reply, {"op": "auth", "success": True, "userId": str(user)})
                conn.user = user

        @rule(c=CONN, room=ANY_ROOM)
        def join(self, c: int, room: str) -> None:
            self.run(self._join, self.conns[c], room)

        async def _join(self, conn: ConnModel, key: str) -> None:
            room_id = self.room_ids[key]
            frame = {"op": "join", "room_id": str(room_id)}
            if conn.user is None:
                expect(
                    await conn.client.request(frame),
                    {"op": "join", "success": False, "error": UNAUTHORIZED},
                )
                return
            if conn.user not in self.members[key]:
                expect(
                    await conn.client.request(frame),
                    {"op": "join", "success": False, "error": FORBIDDEN, "room_id": str(room_id)},
                )
                return
            # Settle first: no live event of an earlier message may race the join.
            await self._check_all()
            expect(
                await conn.client.request(frame),
                {"op": "join", "success": True, "room_id": str(room_id)},
            )
            view = conn.rooms.setdefault(key, RoomView())
            mark = self.last_read[conn.user, key]
            # Unread messages, oldest first, minus what this connection was given already.
            expected = [m.id for m in self.msgs[key] if m.id > mark and m.id not in view.delivered]
            got = await self._barrier(conn.client)
            assert [e["message"]["id"] for e in got] == expected, (key, mark, got)
            for event in got:
                self.check_event(event, key, self.by_id[event["message"]["id"]], "backfill")
            view.delivered.update(expected)

        @rule(c=CONN, room=ANY_ROOM, text=TEXT, temp_id=TEMP_ID, variant=SEND_VARIANT)
        def send(self, c: int, room: str, text: str, temp_id: str | None, variant: str) -> None:
            self.run(self._send, self.conns[c], room, text, temp_id, variant)

        async def _send(
            self, conn: ConnModel, key: str, text: str, temp_id: str | None, variant: str
        ) -> None:
            room_id = self.room_ids[key]
            frame: dict[str, Any] = {
                "op": "send",
                "room_id": str(room_id),
                "content": {"text": text},
            }
            if temp_id is not None:
                frame["temp_id"] = temp_id
            if variant == "missing_room_id":
                del frame["room_id"]
            elif variant == "bad_room_id":
                frame["room_id"] = "room-" + str(room_id)[:8]
            elif variant == "blank_text":
                frame["content"] = {"text": " \t"[: len(text) % 3]}
            elif variant == "content_not_object":
                frame["content"] = [text] if len(text) % 2 else text
            reply = await conn.client.request(frame)
            error = SEND_VARIANTS[variant]
            if conn.user is None:
                # Refused before its fields are looked at.
                expect(
                    reply,
                    with_temp_id({"op": "send", "success": False, "error": UNAUTHORIZED}, temp_id),
                )
            elif error is not None:
                expect(
                    reply, with_temp_id({"op": "send", "success": False, "error": error}, temp_id)
                )
            elif conn.user not in self.members[key]:
                expected = {"op": "send", "success": False, "error": FORBIDDEN}
                expect(reply, with_temp_id({**expected, "room_id": str(room_id)}, temp_id))
            else:
                message_id = reply.get("message_id")
                assert isinstance(message_id, int) and not isinstance(message_id, bool), reply
                expect(
                    reply,
                    with_temp_id(
                        {"op": "send", "success": True, "message_id": message_id}, temp_id
                    ),
                )
                original = next(
                    (
                        m
                        for m in self.msgs[key]
                        if temp_id is not None and (m.user, m.temp_id) == (conn.user, temp_id)
                    ),
                    None,
                )
                if original is not None:
                    # Idempotent send: the original's id, nothing stored, no event.
                    assert message_id == original.id, (message_id, original)
                    return
                assert all(message_id > m.id for m in self.msgs[key]), (message_id, self.msgs[key])
                msg = Msg(message_id, len(self.msgs[key]) + 1, conn.user, text, temp_id)
                self.msgs[key].append(msg)
                self.by_id[message_id] = msg
                for other in self.conns:
                    if key in other.rooms:
                        other.rooms[key].expected_live.append(message_id)

        @rule(c=CONN, room=st.integers(0, 1), text=TEXT, temp_id=TEMP_ID)
        def chat(self, c: int, room: int, text: str, temp_id: str | None) -> None:
            """A valid send to a room the connection's own user belongs to (the common case)."""
            conn = self.conns[c]
            keys = [k for k in ROOM_KEYS if conn.own_user in self.members[k]]
            self.run(self._send, conn, keys[room % len(keys)], text, temp_id, "valid")

        @rule(c=CONN, room=st.integers(0, 1), stale=st.booleans())
        def read(self, c: int, room: int, stale: bool) -> None:
            """Valid acks in one of the user's own rooms: of its latest message, then (stale)
            of the one before it, which must not move the read mark back."""
            conn = self.conns[c]
            keys = [k for k in ROOM_KEYS if conn.own_user in self.members[k]]
            key = keys[room % len(keys)]
            ids = [m.id for m in self.msgs[key]] or [10**15]
            for message_id in reversed(ids[-2:] if stale else ids[-1:]):
                self.run(self._ack, conn, key, message_id)

        @rule(
            c=CONN,
            room=ANY_ROOM,
            pick=st.sampled_from(["own", "own", "any", "huge", "zero"]),
            data=st.data(),
        )
        def ack(self, c: int, room: str, pick: str, data: st.DataObject) -> None:
            own = [m.id for m in self.msgs[room]]
            if pick == "own" and own:
                message_id = data.draw(st.sampled_from(own), label="acked id")
            elif pick == "any" and self.by_id:
                message_id = data.draw(st.sampled_from(sorted(self.by_id)), label="acked id")
            elif pick == "zero":
                message_id = 0
            else:
                message_id = 10**15
            self.run(self._ack, self.conns[c], room, message_id)

        async def _ack(self, conn: ConnModel, key: str, message_id: int) -> None:
            room_id = self.room_ids[key]
            reply = await conn.client.request(
                {"op": "ack", "room_id": str(room_id), "last_read_message_id": message_id}
            )
            failed = {"op": "ack", "success": False}
            if conn.user is None:
                expect(reply, {**failed, "error": UNAUTHORIZED})
            elif message_id == 0:
                error = f"last_read_message_id must be between 1 and {(1 << 63) - 1}"
                expect(reply, {**failed, "error": error})
            elif conn.user not in self.members[key]:
                expect(reply, {**failed, "error": FORBIDDEN, "room_id": str(room_id)})
            elif message_id > max((m.id for m in self.msgs[key]), default=0):
                expect(reply, {**failed, "error": AHEAD, "room_id": str(room_id)})
            else:
                mark = max(self.last_read[conn.user, key], message_id)
                expect(
                    reply,
                    {
                        "op": "ack",
                        "success": True,
                        "room_id": str(room_id),
                        "last_read_message_id": mark,
                    },
                )
                self.last_read[conn.user, key] = mark

        @rule(c=CONN, kind=st.sampled_from(sorted(GARBAGE)))
        def garbage(self, c: int, kind: str) -> None:
            self.run(self._garbage, self.conns[c], kind)

        async def _garbage(self, conn: ConnModel, kind: str) -> None:
            raw, expected = GARBAGE[kind]
            # request() takes text or a dict; a binary frame goes out raw (no request is pending).
            await conn.client.send_raw(raw)
            expect(await conn.client.next_reply(), expected)

    return ChatMachine


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "pubsub_mode", [PubSubMode.GLOBAL, PubSubMode.PERCONV], ids=["global", "perconv"], indirect=True
)
async def test_protocol_state_machine(settings: Settings) -> None:
    settings = attrs.evolve(settings, rl_bucket_capacity=100_000, auth_timeout_ms=600_000)
    async with running_system(settings) as system, trio.open_nursery() as nursery:
        machine = build_machine(system, nursery)

        def run_machine() -> None:
            run_state_machine_as_test(
                machine,
                settings=hypothesis.settings(
                    max_examples=40,
                    stateful_step_count=30,
                    deadline=None,
                    database=None,
                    # No shrinking: a failure prints its whole sequence (at most 30 steps), and
                    # shrinking over real connections could outlast the timeout.
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                ),
            )

        await trio.to_thread.run_sync(run_machine)


# -- focused tests ----------------------------------------------------------------------------


async def test_rate_limit_burst_sixth_frame_refused_connection_stays_open(
    settings: Settings,
) -> None:
    settings = attrs.evolve(settings, rl_bucket_capacity=5, rl_refill_ms=60_000)
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(settings) as system, ChatClient.connect(system.url) as a:
        with trio.fail_after(SETTLE_TIMEOUT_S):
            assert (await a.auth(alice))["success"] is True
            assert (await a.join(room))["success"] is True
            first = await a.send(room, "one")
            assert first["success"] is True
            assert (await a.send(room, "two"))["success"] is True
            assert (await a.ack(room, first["message_id"]))["success"] is True
            sixth = await a.send(room, "three", temp_id="t-6")
            assert sixth == {
                "op": "send",
                "success": False,
                "error": RATE_LIMITED,
                "temp_id": "t-6",
            }
            assert a.close_reason is None
            # Still served (and still limited), whatever the op: the connection is open.
            seventh = await a.request({"op": "ack", "room_id": str(room)})
            assert seventh == {"op": "ack", "success": False, "error": RATE_LIMITED}
            assert a.close_reason is None


async def test_rejoin_does_not_redeliver_messages_delivered_live(settings: Settings) -> None:
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(settings) as system, ChatClient.connect(system.url) as a:
        with trio.fail_after(SETTLE_TIMEOUT_S):
            await a.auth(alice)
            assert (await a.join(room))["success"] is True
            sent = await a.send(room, "once")
            live = await a.next_event()
            assert (live["source"], live["message"]["id"]) == ("live", sent["message_id"])
            assert (await a.join(room))["success"] is True
            # Barrier: anything the re-join queued arrives before the next reply.
            assert (await a.request(BARRIER_FRAME)) == BARRIER_REPLY
            assert a.pending_events() == []


@pytest.mark.parametrize(
    "extra",
    [{"content": {"text": "a\x00b"}}, {"temp_id": "t\x00"}],
    ids=["nul_in_text", "nul_in_temp_id"],
)
async def test_nul_character_is_a_validation_error(
    settings: Settings, extra: dict[str, Any]
) -> None:
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(settings) as system, ChatClient.connect(system.url) as a:
        with trio.fail_after(SETTLE_TIMEOUT_S):
            await a.auth(alice)
            frame = {"op": "send", "room_id": str(room), "content": {"text": "hi"}, **extra}
            reply = await a.request(frame)
            check_reply_shape(reply)
            assert reply["success"] is False
            assert reply["error"] != UNAVAILABLE
            assert "must not contain NUL" in reply["error"]
