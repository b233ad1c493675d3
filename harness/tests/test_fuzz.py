"""Hostile clients: fuzzed frames against a live gateway and worker, plus pinned regressions.

Nothing a client sends may crash the gateway, corrupt data, leak another room's messages or slow
other clients. :func:`test_fuzzed_frames_against_live_gateway` lets hypothesis generate frames
and short sequences of frames (raw bytes, arbitrary text, invalid JSON, deep nesting, huge
numbers, NaN/Infinity tokens, unicode edge cases incl. NUL and lone-surrogate escapes, valid
requests with mutated fields, mixed with valid auth/join/send/ack) and sends them over real
WebSockets to a gateway and an outbox worker started with ``running_system``. After every frame
and every example it checks:

(a) every reply is a JSON object with a string ``op`` and a boolean ``success``; failures carry
    a non-empty string ``error``, and never ``Service temporarily unavailable`` (no invalid input
    may reach the database and fail there);
(b) rows: ``arcyou_chat_messages`` and ``outbox`` grow by exactly the number of successful
    ``send`` replies, each stored row is what that send asked for, every outbox row gets
    published (none ``dead``), and members' ``last_read_message_id`` equals the highest mark
    returned by a successful ``ack`` (NULL if none);
(c) the gateway and worker log nothing at WARNING or above (no traceback, no "... failed");
(d) a bystander in another room sends a message after each example and receives its own live
    event within :data:`BYSTANDER_BOUND_S`, and never an event of another room; the fuzzing
    connection only ever receives events of rooms it joined.

Only frames larger than ``MAX_BODY_BYTES`` may close the connection (1009); the fuzzer then
reconnects for the rest of the example.

How trio and hypothesis meet (as in ``test_e2e_statemachine``): the trio test starts the system
and the bystander, then runs hypothesis in a worker thread; each example calls back into trio
with ``trio.from_thread.run`` and checks the database with a plain psycopg connection from the
thread.

The focused regression tests below pin the exact reply (or close code) of a list of hostile
frames, and the numbers ``content`` may carry (see the notes on the bugs found, below).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import attrs
import hypothesis
import orjson
import psycopg
import pytest
import trio
import trio_websocket
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from arcyou_harness.fuzz.frames import NAUGHTY as FUZZER_NAUGHTY
from arcyou_trio.client import ChatClient, open_websocket
from arcyou_trio.config import Settings
from arcyou_trio.store import Refusal
from tests.fixtures import db, make_room, running_system
from tests.helpers import send_one

# Wire strings, pinned here rather than imported: the tests guard the protocol.
UNAVAILABLE = "Service temporarily unavailable"
UNAUTHORIZED = "Unauthorized"
FORBIDDEN = "Forbidden: not a member"
MAX_ID = 9223372036854775807

REPLY_TIMEOUT_S = 5.0
BYSTANDER_BOUND_S = 5.0
SETTLE_TIMEOUT_S = 5.0

# Bugs this module found (fixed in 3429263 while it was written; the tests below fail on its
# parent 748ca61 and pin the fixed behaviour):
#
# - A number in `content` beyond 64-bit integers (18446744073709551616, 1e20, -1e19, 1e300) was
#   accepted and stored, but PostgreSQL jsonb keeps it as an exact integer (e.g.
#   18446744073709552000) that orjson cannot encode again: the worker marked the outbox row dead
#   (live event lost) and every later join whose backfill held the message crashed its
#   connection handler (TypeError in codec.dumps, traceback, close 1011). Now refused by
#   validation, and codec.dumps can encode such numbers stored by other means.
# - The reply to {"op": "event"} echoed the op "event", although replies never use it (a client
#   telling pushes from replies by op, like ChatClient, waited forever). Now echoed as "error".
CONTENT_NUMBERS = "content numbers must be between -2^63 and 2^63"


# -- log capture ----------------------------------------------------------------------------------


class LogCapture(logging.Handler):
    """Every WARNING-or-above record of the ``arcyou_trio`` loggers (thread-safe appends)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def describe(self, start: int = 0) -> list[str]:
        out = []
        for record in self.records[start:]:
            text = f"{record.name} {record.levelname}: {record.getMessage()}"
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            out.append(text)
        return out


@pytest.fixture
def gateway_log() -> Iterator[LogCapture]:
    logger = logging.getLogger("arcyou_trio")
    handler = LogCapture()
    old_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def assert_quiet(log: LogCapture, start: int = 0) -> None:
    records = log.describe(start)
    assert not records, "gateway/worker logged:\n" + "\n".join(records)


# -- frames on the wire ---------------------------------------------------------------------------


@attrs.frozen
class Raw:
    """JSON text put into a frame verbatim (tokens Python's json cannot produce)."""

    text: str


@attrs.frozen
class Obj:
    """A JSON object as key/value pairs, so that a key may repeat."""

    pairs: tuple[tuple[str | Raw, Any], ...]

    def get(self, key: str) -> Any:
        found = None
        for k, v in self.pairs:
            if k == key:
                found = v
        return found


def encode(value: Any) -> str:
    """Compact JSON text for ``value``, with :class:`Raw` inserted verbatim."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        items = value.pairs
    elif isinstance(value, dict):
        items = tuple(value.items())
    elif isinstance(value, list | tuple):
        return "[" + ",".join(encode(v) for v in value) + "]"
    else:
        return json.dumps(value, ensure_ascii=False)
    return "{" + ",".join(f"{encode(k)}:{encode(v)}" for k, v in items) + "}"


@attrs.frozen(repr=False)
class Frame:
    data: str | bytes

    @property
    def size(self) -> int:
        return len(self.data) if isinstance(self.data, bytes) else len(self.data.encode())

    def __repr__(self) -> str:
        data = self.data
        if len(data) <= 160:
            return f"Frame({data!r})"
        unit = "bytes" if isinstance(data, bytes) else "chars"
        return f"Frame({data[:100]!r} ...<{len(data)} {unit}, {self.size} bytes>... {data[-40:]!r})"


@attrs.frozen
class Closed:
    code: int | None
    reason: str | None


def check_reply_shape(reply: Any) -> None:
    assert isinstance(reply, dict), reply
    assert isinstance(reply.get("op"), str), reply
    assert isinstance(reply.get("success"), bool), reply
    if not reply["success"]:
        assert isinstance(reply.get("error"), str) and reply["error"], reply


class RawConn:
    """One WebSocket spoken to in lock step: a frame, then events until its reply (or a close).

    A frame is a reply when it is a JSON object with a ``success`` key; everything else must be
    a ``message.created`` event of a room this connection joined.
    """

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.joined: set[str] = set()
        self.user: str | None = None
        self.events: list[dict[str, Any]] = []

    async def exchange(self, data: str | bytes) -> dict[str, Any] | Closed:
        try:
            await self.ws.send_message(data)
        except trio_websocket.ConnectionClosed as exc:
            return Closed(exc.reason.code, exc.reason.reason)
        with trio.fail_after(REPLY_TIMEOUT_S):
            while True:
                try:
                    text = await self.ws.get_message()
                except trio_websocket.ConnectionClosed as exc:
                    return Closed(exc.reason.code, exc.reason.reason)
                assert isinstance(text, str), f"server sent a binary frame: {text!r}"
                obj = orjson.loads(text)  # strict: no NaN, no lone surrogates
                if isinstance(obj, dict) and "success" in obj:
                    check_reply_shape(obj)
                    return obj
                self.check_event(obj)

    def check_event(self, obj: Any) -> None:
        assert isinstance(obj, dict), f"not a reply nor an event: {obj!r}"
        assert obj.get("op") == "event", f"not a reply nor an event: {obj!r}"
        assert obj.get("type") == "message.created", obj
        assert obj.get("roomId") in self.joined, f"event of a room not joined: {obj!r}"
        assert isinstance(obj.get("message", {}).get("id"), int), obj
        self.events.append(obj)


def succeed(outcome: dict[str, Any] | Closed) -> dict[str, Any]:
    assert isinstance(outcome, dict) and outcome["success"] is True, outcome
    return outcome


async def connect(stack: AsyncExitStack, url: str) -> RawConn:
    ws = await stack.enter_async_context(open_websocket(url))
    return RawConn(ws)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, numbers compared as numbers (jsonb rewrites them as decimals)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or math.isclose(a, b, rel_tol=1e-15)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# -- strategies -----------------------------------------------------------------------------------

# Any code point but lone surrogates (not encodable as UTF-8, so no text frame can carry them;
# they are sent as JSON escapes instead). NUL included.
ANY_CHAR = st.characters(blacklist_categories=("Cs",))
TEXT_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
# The fuzzer's own list, without the NUL strings (NUL_STRINGS below): these must be accepted.
NAUGHTY = st.sampled_from([s for s in FUZZER_NAUGHTY if "\x00" not in s])
NUL_STRINGS = st.sampled_from(["\x00", "a\x00b", "\x00" * 3])
# Escapes that decode to something a text frame could not carry as such.
GOOD_ESCAPES = st.sampled_from(
    [Raw('"\\ud83d\\ude00"'), Raw('"\\uFFFF"'), Raw('"\\u00e9\\/\\b\\f"'), Raw('"\\u2028"')]
)
BAD_ESCAPES = st.sampled_from(
    [
        Raw('"\\u0000"'),  # valid JSON, but NUL
        Raw('"\\ud800"'),  # lone surrogates: not JSON orjson accepts
        Raw('"\\udfff"'),
        Raw('"a\\ud800\\u0041"'),
        Raw('"\\x41"'),
        Raw('"\\u12"'),
        Raw('"\\uZZZZ"'),
    ]
)
# Valid JSON numbers beyond 64-bit integers: orjson decodes them as floats (or refuses them as
# infinite), and jsonb would store the finite ones as integers beyond 64 bits (refused now).
HUGE_NUMBERS = st.sampled_from(
    [
        Raw("18446744073709551616"),
        Raw("-1180591620717411303424"),
        Raw("-9223372036854775809"),
        Raw("1e20"),
        Raw("-1e19"),
        Raw("1e300"),
        Raw("1e400"),
        Raw("-1e400"),
        Raw("1" + "0" * 400),
    ]
)
# Not JSON at all.
BAD_NUMBERS = st.sampled_from(
    [Raw(t) for t in ("NaN", "Infinity", "-Infinity", "+1", "01", ".5", "1.", "0x10", "1e", "--1")]
)
# Numbers that survive jsonb and orjson: integers of 64 bits, floats far from that range.
SAFE_NUMBERS = (
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(min_value=-1e18, max_value=1e18, allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -1, 1, MAX_ID, MAX_ID + 1, -(2**63), 2**64 - 1, 5e-324, 1e-300, -0.0])
)
CLEAN_KEYS = st.text(TEXT_CHAR, max_size=8) | NAUGHTY | GOOD_ESCAPES
ANY_KEYS = CLEAN_KEYS | NUL_STRINGS | BAD_ESCAPES | st.sampled_from(["text", "op", "room_id"])


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """``one_of`` with weights (``one_of`` merges repeated branches, so repeating one does not
    make it likelier)."""
    table = [strategy for weight, strategy in options for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


def json_values(
    scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.builds(lambda kv: Obj(tuple(kv)), st.lists(st.tuples(keys, children), max_size=4))
        ),
        max_leaves=10,
    )


# Content that a valid send may carry next to its text: stored and delivered as-is.
CLEAN_VALUES = json_values(
    st.none()
    | st.booleans()
    | SAFE_NUMBERS
    | st.text(TEXT_CHAR, max_size=20)
    | NAUGHTY
    | GOOD_ESCAPES,
    CLEAN_KEYS,
)


def hostile_values(numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Any JSON-ish value: NUL, bad escapes, bad number tokens, ``numbers`` at any depth."""
    scalars = weighted(
        (1, st.none()),
        (1, st.booleans()),
        (3, numbers),
        (3, st.text(ANY_CHAR, max_size=20)),
        (2, NAUGHTY),
        (1, NUL_STRINGS),
        (1, GOOD_ESCAPES),
        (1, BAD_ESCAPES),
        (1, BAD_NUMBERS),
    )
    return json_values(scalars, ANY_KEYS)


@st.composite
def deep_nesting(draw: st.DrawFn) -> Raw:
    depth = draw(st.integers(min_value=1, max_value=2000))
    kind = draw(st.sampled_from(["array", "object", "mixed"]))
    if kind == "array":
        opening, closing = "[" * depth, "]" * depth
    elif kind == "object":
        opening, closing = '{"a":' * depth, "}" * depth
    else:
        opening = '[{"a":' * (depth // 2 + 1)
        closing = "}]" * (depth // 2 + 1)
    if draw(st.booleans()):
        closing = closing[: len(closing) // 2]  # unbalanced
    return Raw(opening + "1" + closing)


BIG_CHARS = st.sampled_from(["x", "\u00e9", "\ud55c", "\U0001f600"])  # 1 to 4 UTF-8 bytes


def huge_strings(max_body_bytes: int) -> st.SearchStrategy[str]:
    """Strings of about MAX_BODY_BYTES bytes."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        char = draw(BIG_CHARS)
        target = draw(st.integers(min_value=max_body_bytes - 300, max_value=max_body_bytes + 100))
        return char * (target // len(char.encode()))

    return build()


@attrs.frozen
class Ids:
    rooms: list[str]  # the fuzzer's rooms
    bystander_room: str
    ghost_room: str  # no such room
    users: list[str]  # the fuzzer's users (the last one is in no room)
    members: dict[str, set[str]]  # user -> rooms


def frame_strategy(ids: Ids, max_body_bytes: int) -> Any:
    """Examples: an optional auth (+ join) prefix, then 1-8 frames (about 3/8 valid requests,
    3/8 mutated requests, 1/8 garbage text, 1/16 binary, 1/16 of about MAX_BODY_BYTES)."""
    nested = hostile_values(SAFE_NUMBERS | HUGE_NUMBERS)  # may end up inside `content`
    field_values = weighted(
        (4, CLEAN_VALUES),  # valid JSON, mostly of the wrong type
        (4, nested),
        (2, HUGE_NUMBERS),
        (2, NAUGHTY | NUL_STRINGS),
        (1, BAD_NUMBERS | BAD_ESCAPES),
        (1, deep_nesting()),
        (1, huge_strings(max_body_bytes)),
        (1, st.text(TEXT_CHAR, min_size=3990, max_size=4010)),
    )
    first = ids.rooms[0]
    room_ref = st.sampled_from(
        [
            *ids.rooms,
            *ids.rooms,
            ids.bystander_room,
            ids.ghost_room,
            first.upper(),
            "{" + first + "}",
            uuid.UUID(first).hex,
            "urn:uuid:" + first,
        ]
    )
    bad_room = st.sampled_from(
        ["not-a-uuid", first + "0", first[:-1], " " + first, first + "\x00", "a" * 65]
    ) | st.text(ANY_CHAR, max_size=70)
    token_ref = st.sampled_from([*ids.users, ids.users[0].upper(), uuid.UUID(ids.users[0]).hex])
    temp_id = st.text(ANY_CHAR, max_size=12) | st.sampled_from(["t" * 128, "t" * 129, "\x00"])
    text = st.text(TEXT_CHAR, min_size=1, max_size=30).filter(lambda s: s.strip() != "")
    message_id = st.integers(min_value=1, max_value=12) | st.integers(min_value=1, max_value=400)

    @st.composite
    def valid_request(draw: st.DrawFn) -> Obj:
        op = draw(st.sampled_from(["auth", "join", "join", "send", "send", "send", "ack", "ack"]))
        if op == "auth":
            return Obj((("op", "auth"), ("token", draw(token_ref))))
        room = draw(room_ref)
        if op == "join":
            return Obj((("op", "join"), ("room_id", room)))
        if op == "ack":
            return Obj(
                (("op", "ack"), ("room_id", room), ("last_read_message_id", draw(message_id)))
            )
        content = [("text", draw(text))]
        content += draw(st.lists(st.tuples(CLEAN_KEYS, CLEAN_VALUES), max_size=2))
        pairs: list[tuple[str | Raw, Any]] = [
            ("op", "send"),
            ("room_id", room),
            ("content", Obj(tuple(content))),
        ]
        if draw(st.booleans()):
            pairs.append(("temp_id", draw(st.text(TEXT_CHAR, max_size=12))))
        if draw(st.integers(0, 4)) == 0:
            pairs.append(("reply_to_message_id", draw(message_id)))
        if draw(st.integers(0, 4)) == 0:
            pairs.append(("type", "text"))
        return Obj(tuple(pairs))

    op_values = (
        st.sampled_from(["event", "SEND", "Auth", "auth ", "leave", "x" * 33, "send\x00", ""])
        | nested
        | BAD_ESCAPES
        | HUGE_NUMBERS
    )

    content_mutations = st.sampled_from(
        ["text", "text", "drop-text", "key", "long", "deep", "nul", "whole"]
    )

    @st.composite
    def mutated_content(draw: st.DrawFn, content: Obj) -> Any:
        kind = draw(content_mutations)
        pairs = list(content.pairs)
        if kind == "text":
            pairs[0] = ("text", draw(field_values))
        elif kind == "drop-text":
            pairs = pairs[1:]
        elif kind == "key":
            pairs.append((draw(ANY_KEYS), draw(nested)))
        elif kind == "long":
            size = draw(st.integers(min_value=3995, max_value=4005))
            pairs[0] = ("text", draw(st.sampled_from(["y", "\ud55c", "\U0001f600"])) * size)
        elif kind == "deep":
            pairs.append(("d", Raw("[" * draw(st.integers(28, 40)) + "]" * 40)))
        elif kind == "nul":
            pairs[0] = ("text", draw(text) + "\x00")
        else:
            return draw(field_values)
        return Obj(tuple(pairs))

    mutation_kinds = st.sampled_from(
        ["set"] * 4 + ["content"] * 3 + ["drop", "extra", "dup", "op", "room"]
    )

    @st.composite
    def mutated_request(draw: st.DrawFn) -> Obj:
        pairs = list(draw(valid_request()).pairs)
        for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
            kind = draw(mutation_kinds)
            keys = [k for k, _ in pairs]
            fields = [i for i, (k, _) in enumerate(pairs) if k != "op"]
            if kind == "drop" and pairs:
                del pairs[draw(st.integers(0, len(pairs) - 1))]
            elif kind == "set" and fields:
                i = draw(st.sampled_from(fields))
                pairs[i] = (pairs[i][0], draw(field_values))
            elif kind == "content" and "content" in keys:
                i = keys.index("content")
                if isinstance(pairs[i][1], Obj) and pairs[i][1].pairs[:1]:
                    pairs[i] = ("content", draw(mutated_content(pairs[i][1])))
            elif kind == "extra":
                key = draw(
                    ANY_KEYS
                    | st.sampled_from(
                        ["temp_id", "type", "reply_to_message_id", "content", "token"]
                    )
                )
                value = draw(temp_id if key == "temp_id" else field_values)
                pairs.append((key, value))
            elif kind == "dup" and keys:
                pairs.append((draw(st.sampled_from(keys)), draw(field_values)))
            elif kind == "op":
                pairs = [(k, v) for k, v in pairs if k != "op"]
                pairs.insert(0, ("op", draw(op_values)))
            elif kind == "room":
                pairs = [(k, v) for k, v in pairs if k != "room_id"]
                pairs.append(("room_id", draw(bad_room | field_values)))
        return Obj(tuple(pairs))

    @st.composite
    def near_limit(draw: st.DrawFn) -> str:
        """A valid request padded (top-level key: ignored, not stored) to MAX_BODY_BYTES +-64."""
        text = encode(draw(valid_request()))[:-1] + ',"pad":"'
        char = draw(BIG_CHARS)
        room = max_body_bytes - len(text.encode()) - 2 + draw(st.integers(-64, 64))
        return text + char * max(0, room // len(char.encode())) + '"}'

    @st.composite
    def truncated(draw: st.DrawFn) -> str:
        text = encode(draw(valid_request()))
        return text[: draw(st.integers(0, len(text) - 1))]

    garbage_text = (
        st.text(ANY_CHAR, max_size=200)
        | st.sampled_from(["", " ", "\n", "\t \r\n", "{", "}", "[", '"', "nul", "tru", "{,}"])
        | st.sampled_from(["{'op': 'auth'}", '{"op":"auth" "token":1}', '{"op":"send",}'])
        | truncated()
        | st.builds(encode, HUGE_NUMBERS | BAD_NUMBERS | BAD_ESCAPES | deep_nesting())
        | st.builds(encode, hostile_values(SAFE_NUMBERS | HUGE_NUMBERS))
    )
    frames = weighted(
        (6, st.builds(lambda o: Frame(encode(o)), valid_request())),
        (6, st.builds(lambda o: Frame(encode(o)), mutated_request())),
        (2, st.builds(Frame, garbage_text)),
        (1, st.builds(Frame, st.binary(max_size=64))),
        (1, st.builds(Frame, near_limit())),
    )
    prefix = st.sampled_from(["none", "auth", "auth", "auth", "auth+join", "auth-2"])
    return st.tuples(prefix, st.lists(frames, min_size=1, max_size=8))


# -- the fuzz test --------------------------------------------------------------------------------


@attrs.define
class Outcome:
    """One example: its successful sends, and labels for hypothesis' statistics."""

    sent: list[tuple[int, str, str, Any]] = attrs.Factory(list)
    labels: set[str] = attrs.Factory(set)


@attrs.define
class Books:
    """What the fuzzer's replies say should be in the database."""

    sends: int = 0  # successful sends (fuzzer and bystander)
    marks: dict[tuple[str, str], int] = attrs.Factory(dict)  # (room, user) -> acked mark
    stored: list[tuple[int, str, str, dict[str, Any]]] = attrs.Factory(list)
    # (room, user, temp_id) -> message id: a send repeating one is answered with that message
    # and stores nothing (idempotent send).
    temp_ids: dict[tuple[str, str, str], int] = attrs.Factory(dict)


def build_example_runner(
    url: str, ids: Ids, books: Books, max_body_bytes: int
) -> Callable[[str, list[Frame]], Awaitable[Outcome]]:
    canonical_users = {str(uuid.UUID(u)) for u in ids.users}

    async def run_example(prefix: str, frames: list[Frame]) -> Outcome:
        """Send the frames, check every answer; return the successful sends."""
        out = Outcome()
        sent = out.sent
        setup = []
        if prefix.startswith("auth"):
            user = ids.users[1] if prefix == "auth-2" else ids.users[0]
            setup.append(Frame(encode({"op": "auth", "token": user})))
        if prefix == "auth+join":
            setup.append(Frame(encode({"op": "join", "room_id": ids.rooms[0]})))
        async with AsyncExitStack() as stack:
            conn: RawConn | None = None
            for frame in setup + frames:
                if conn is None:
                    conn = await connect(stack, url)
                outcome = await conn.exchange(frame.data)
                if frame.size > max_body_bytes:
                    assert isinstance(outcome, Closed) and outcome.code == 1009, (frame, outcome)
                    out.labels.add("closed 1009")
                    conn = None  # reconnect for the rest of the example
                    continue
                assert not isinstance(outcome, Closed), (frame, outcome)
                reply = outcome
                if not reply["success"]:
                    assert reply["error"] != UNAVAILABLE, (frame, reply)
                    out.labels.add(f"error: {reply['error'][:60]}")
                    continue
                op = reply["op"]
                out.labels.add(f"success: {op}")
                request = orjson.loads(frame.data)  # as the gateway read it
                if op == "auth":
                    assert reply["userId"] in canonical_users, (frame, reply)
                    conn.user = reply["userId"]
                    continue
                assert conn.user is not None, (frame, reply)
                rooms = ids.members[conn.user]
                if op == "join":
                    assert reply["room_id"] in rooms, (frame, reply)
                    conn.joined.add(reply["room_id"])
                elif op == "send":
                    assert isinstance(reply["message_id"], int), (frame, reply)
                    room = str(uuid.UUID(request["room_id"]))
                    assert room in rooms, (frame, reply)
                    temp_id = request.get("temp_id")
                    if isinstance(temp_id, str):
                        key = (room, conn.user, temp_id)
                        if key in books.temp_ids:
                            assert reply["message_id"] == books.temp_ids[key], (frame, reply)
                            out.labels.add("duplicate send")
                            continue
                        books.temp_ids[key] = reply["message_id"]
                    sent.append((reply["message_id"], room, conn.user, request))
                elif op == "ack":
                    assert reply["room_id"] in rooms, (frame, reply)
                    mark = reply["last_read_message_id"]
                    assert isinstance(mark, int) and mark >= request["last_read_message_id"]
                    key = (reply["room_id"], conn.user)
                    assert mark >= books.marks.get(key, 0), (frame, reply, books.marks)
                    books.marks[key] = mark
                else:
                    raise AssertionError(f"success reply of an unknown op: {frame} {reply}")
            if conn is not None and conn.events:
                out.labels.add("events received")
        return out

    return run_example


def check_database(conn: psycopg.Connection[Any], books: Books, bystander_user: str) -> None:
    messages = conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone()
    outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()
    assert messages == (books.sends,), (messages, books.sends)
    assert outbox == (books.sends,), (outbox, books.sends)
    marks = {
        (str(room), str(user)): mark
        for room, user, mark in conn.execute(
            "SELECT room_id, user_id, last_read_message_id FROM arcyou_chat_members"
        ).fetchall()
    }
    expected = {key: books.marks.get(key) for key in marks}
    assert marks == expected
    for message_id, room, user, request in books.stored:
        row = conn.execute(
            "SELECT room_id, user_id, type::text, content, temp_id, reply_to_message_id"
            " FROM arcyou_chat_messages WHERE id = %s",
            (message_id,),
        ).fetchone()
        assert row is not None, message_id
        assert (str(row[0]), str(row[1]), row[2]) == (room, user, "text"), (row, request)
        assert same_json(row[3], request["content"]), (row, request)
        assert row[4] == request.get("temp_id"), (row, request)
        assert row[5] == request.get("reply_to_message_id"), (row, request)
    books.stored.clear()
    # Nobody but the bystander writes into the bystander's room.
    foreign = conn.execute(
        "SELECT count(*) FROM arcyou_chat_messages m JOIN arcyou_chat_members b"
        " ON b.room_id = m.room_id AND b.user_id = %s WHERE m.user_id <> %s",
        (bystander_user, bystander_user),
    ).fetchone()
    assert foreign == (0,)


def wait_outbox_settled(conn: psycopg.Connection[Any]) -> None:
    """Wait until no outbox row is pending or claimed (published or dead)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while conn.execute(
        "SELECT count(*) FROM outbox WHERE status IN ('pending', 'in_progress')"
    ).fetchone() != (0,):
        assert time.monotonic() < deadline, "outbox rows neither published nor dead"
        time.sleep(0.02)


def wait_outbox_published(conn: psycopg.Connection[Any]) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status <> 'published'),"
            " count(*) FILTER (WHERE status = 'dead'), string_agg(DISTINCT error, '; ')"
            " FROM outbox"
        ).fetchone()
        assert row is not None
        unpublished, dead, errors = row
        assert dead == 0, f"{dead} outbox rows dead: {errors}"
        if unpublished == 0:
            return
        assert time.monotonic() < deadline, f"{unpublished} outbox rows not published"
        time.sleep(0.02)


@pytest.mark.timeout(180)
async def test_fuzzed_frames_against_live_gateway(
    settings: Settings, gateway_log: LogCapture
) -> None:
    settings = attrs.evolve(settings, rl_bucket_capacity=1_000_000, auth_timeout_ms=60_000)
    users = [uuid.uuid4() for _ in range(3)]
    bystander_user = uuid.uuid4()
    url = settings.database_url
    f1 = make_room(url, users[0], users[1], name="fuzz-1")
    f2 = make_room(url, users[0], name="fuzz-2")
    home = make_room(url, bystander_user, name="bystander")
    ids = Ids(
        rooms=[str(f1), str(f2)],
        bystander_room=str(home),
        ghost_room=str(uuid.uuid4()),
        users=[str(u) for u in users],
        members={str(users[0]): {str(f1), str(f2)}, str(users[1]): {str(f1)}, str(users[2]): set()},
    )
    books = Books()
    latencies: list[float] = []
    tally: Counter[str] = Counter()  # examples per label

    async with running_system(settings) as system, ChatClient.connect(system.url) as bystander:
        with trio.fail_after(REPLY_TIMEOUT_S):
            assert (await bystander.auth(bystander_user))["success"] is True
            assert (await bystander.join(home))["success"] is True
        # A few messages in each room, so that acks and replies have something to point at.
        for i in range(3):
            for room in (f1, f2):
                await send_one(
                    system.store,
                    room_id=room,
                    user_id=users[0],
                    type="text",
                    content={"text": f"seed {i}"},
                )
                books.sends += 1
        run_example = build_example_runner(system.url, ids, books, settings.max_body_bytes)

        async def bystander_round(n: int) -> None:
            started = trio.current_time()
            with trio.fail_after(BYSTANDER_BOUND_S):
                reply = await bystander.send(home, f"still here {n}", temp_id=f"b{n}")
                assert reply["success"] is True, reply
                books.sends += 1
                while True:
                    event = await bystander.next_event()
                    assert event["roomId"] == str(home), f"bystander got {event}"
                    if event["message"]["id"] == reply["message_id"]:
                        break
            latencies.append(trio.current_time() - started)

        def run_hypothesis() -> None:
            with db(url) as conn:
                count = 0

                def one_example(example: tuple[str, list[Frame]]) -> None:
                    nonlocal count
                    count += 1
                    logged = len(gateway_log.records)
                    outcome = trio.from_thread.run(run_example, *example)
                    tally.update(outcome.labels)
                    books.sends += len(outcome.sent)
                    books.stored.extend(outcome.sent)
                    trio.from_thread.run(bystander_round, count)
                    wait_outbox_published(conn)
                    check_database(conn, books, str(bystander_user))
                    assert_quiet(gateway_log, logged)

                test = hypothesis.given(frame_strategy(ids, settings.max_body_bytes))(one_example)
                # Once stored, then lost to the worker and crashing joins (fixed, see above).
                big = Obj(
                    (
                        ("op", "send"),
                        ("room_id", ids.rooms[0]),
                        ("content", Obj((("text", "big"), ("n", Raw("18446744073709551616"))))),
                    )
                )
                join = Obj((("op", "join"), ("room_id", ids.rooms[0])))
                test = hypothesis.example(("auth", [Frame(encode(big)), Frame(encode(join))]))(test)
                # One byte over the limit: closed (1009), then a fresh unauthenticated connection.
                oversize = Frame("x" * (settings.max_body_bytes + 1))
                test = hypothesis.example(("auth+join", [oversize, Frame(encode(join))]))(test)
                test = hypothesis.settings(
                    max_examples=100,
                    deadline=None,
                    database=None,
                    # No shrinking over live connections: a failure prints its (short) example.
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )(test)
                test()

        await trio.to_thread.run_sync(run_hypothesis)

    assert_quiet(gateway_log)
    assert max(latencies) < BYSTANDER_BOUND_S
    print(f"examples per outcome ({len(latencies)} examples):")
    for label, n in tally.most_common():
        print(f"  {n:4d}  {label}")
    # The strategies still get past auth and join (not a vacuous run).
    for label in ("success: join", "success: send", "closed 1009"):
        assert tally[label] > 0, (label, tally)


# -- focused regressions --------------------------------------------------------------------------

ROOM = "<room>"  # replaced by the test's room id


def _send(**fields: Any) -> dict[str, Any]:
    return {"op": "send", "room_id": ROOM, "content": {"text": "hi"}, **fields}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _err(op: str, error: str, **extra: Any) -> dict[str, Any]:
    return {"op": op, "success": False, "error": error, **extra}


BETWEEN = f"must be between 1 and {MAX_ID}"

# id -> (frame; dict frames are JSON-encoded with ROOM replaced, the expected reply or close
# code, whether to authenticate first)
HOSTILE: dict[str, tuple[str | bytes | dict[str, Any], dict[str, Any] | int, bool]] = {
    "oversize_ascii": ("x" * 65537, 1009, True),
    "oversize_in_bytes_not_chars": ("\ud55c" * 21846, 1009, True),
    "oversize_binary": (b"\x00" * 65537, 1009, False),
    "oversize_valid_send": (_send(content={"text": "x", "pad": "y" * 65536}), 1009, True),
    "binary": (b"\x00\xff{}", _err("error", "binary frames are not supported"), False),
    "binary_after_auth": (b'{"op":"auth"}', _err("error", "binary frames are not supported"), True),
    "invalid_json": ("{not json", _err("error", "invalid JSON"), True),
    "empty_string": ("", _err("error", "invalid JSON"), True),
    "nan": (
        '{"op":"ack","room_id":"x","last_read_message_id":NaN}',
        _err("error", "invalid JSON"),
        True,
    ),
    "infinity_token": ("Infinity", _err("error", "invalid JSON"), True),
    "float_overflow_1e400": (
        '{"op":"send","content":{"text":"hi","n":1e400}}',
        _err("error", "invalid JSON"),
        True,
    ),
    "lone_surrogate_escape": (
        '{"op":"auth","token":"\\ud800"}',
        _err("error", "invalid JSON"),
        False,
    ),
    "nested_2000_arrays": ("[" * 2000 + "]" * 2000, _err("error", "invalid JSON"), True),
    "nested_2000_objects": ('{"a":' * 2000 + "1" + "}" * 2000, _err("error", "invalid JSON"), True),
    "json_array": ("[1, 2]", _err("error", "frame must be a JSON object"), True),
    "json_null": ("null", _err("error", "frame must be a JSON object"), True),
    "json_huge_int": ("18446744073709551616", _err("error", "frame must be a JSON object"), True),
    "op_number": ({"op": 5}, _err("error", "unknown op"), True),
    "op_null": ({"op": None}, _err("error", "op required"), True),
    "op_missing": ({"room_id": ROOM}, _err("error", "op required"), True),
    "op_object": ({"op": {"op": "send"}}, _err("error", "unknown op"), True),
    "op_wrong_case": ({"op": "SEND"}, _err("SEND", "unknown op"), True),
    "op_too_long_not_echoed": ({"op": "x" * 33}, _err("error", "unknown op"), True),
    "op_event_not_echoed": ({"op": "event"}, _err("error", "unknown op"), True),
    "op_event_unauthenticated": ({"op": "event"}, _err("error", "unknown op"), False),
    "content_number_2_64": (
        _send(content={"text": "hi", "n": 2**64}, temp_id="t1"),
        _err("send", CONTENT_NUMBERS, temp_id="t1"),
        True,
    ),
    "content_number_2_63": (
        _send(content={"text": "hi", "n": 2**63}),
        _err("send", CONTENT_NUMBERS),
        True,
    ),
    "content_number_minus_2_70": (
        _send(content={"text": "hi", "deep": [{"n": -(2**70)}]}),
        _err("send", CONTENT_NUMBERS),
        True,
    ),
    "content_number_1e20": (
        _send(content={"text": "hi", "n": 1e20}),
        _err("send", CONTENT_NUMBERS),
        True,
    ),
    "content_number_minus_1e19": (
        _send(content={"text": "hi", "n": -1e19}),
        _err("send", CONTENT_NUMBERS),
        True,
    ),
    "content_number_1e300": (
        _send(content={"text": "hi", "n": 1e300}),
        _err("send", CONTENT_NUMBERS),
        True,
    ),
    "op_with_nul": ({"op": "send\x00"}, _err("send\x00", "unknown op"), True),
    "unauthenticated_send": (_send(temp_id="t1"), _err("send", UNAUTHORIZED, temp_id="t1"), False),
    "unauthenticated_garbage_join": (
        {"op": "join", "room_id": 5},
        _err("join", UNAUTHORIZED),
        False,
    ),
    "token_number": ({"op": "auth", "token": 5}, _err("auth", "token must be a string"), False),
    "token_empty": ({"op": "auth", "token": ""}, _err("auth", "token required"), False),
    "token_not_uuid": ({"op": "auth", "token": "x" * 100}, _err("auth", UNAUTHORIZED), False),
    "token_too_long": (
        {"op": "auth", "token": "x" * 8193},
        _err("auth", "token must be at most 8192 characters"),
        False,
    ),
    "second_auth": (
        {"op": "auth", "token": str(uuid.UUID(int=1))},
        _err("auth", "already authenticated"),
        True,
    ),
    "room_id_not_uuid": (
        _send(room_id="not-a-uuid", temp_id="t1"),
        _err("send", "room_id must be a UUID", temp_id="t1"),
        True,
    ),
    "room_id_number": (
        {"op": "join", "room_id": 2**64},
        _err("join", "room_id must be a UUID"),
        True,
    ),
    "room_id_too_long": (
        {"op": "join", "room_id": "a" * 65},
        _err("join", "room_id must be a UUID"),
        True,
    ),
    "room_id_with_nul": (
        {"op": "join", "room_id": ROOM + "\x00"},
        _err("join", "room_id must be a UUID"),
        True,
    ),
    "room_id_missing": ({"op": "join"}, _err("join", "room_id required"), True),
    "content_string": (_send(content="hi"), _err("send", "content must be an object"), True),
    "content_missing": ({"op": "send", "room_id": ROOM}, _err("send", "content required"), True),
    "text_too_long": (
        _send(content={"text": "y" * 4001}),
        _err("send", "content.text too long (max 4000 characters)"),
        True,
    ),
    "text_not_string": (
        _send(content={"text": 5}),
        _err("send", "content.text must be a non-empty string"),
        True,
    ),
    "text_blank": (
        _send(content={"text": " \n\t"}),
        _err("send", "content.text must be a non-empty string"),
        True,
    ),
    "type_image": (
        _send(type="image"),
        _err("send", "type 'image' is not supported (only 'text')"),
        True,
    ),
    "type_number": (_send(type=5), _err("send", "type must be 'text'"), True),
    "content_nested_40": (
        _send(content={"text": "hi", "d": _nested(40)}),
        _err("send", "content must not nest deeper than 32 levels"),
        True,
    ),
    "content_nested_33_levels": (
        _send(content={"text": "hi", "d": _nested(32)}),
        _err("send", "content must not nest deeper than 32 levels"),
        True,
    ),
    "nul_in_text": (
        _send(content={"text": "a\x00b"}, temp_id="t1"),
        _err("send", "content must not contain NUL (U+0000) characters", temp_id="t1"),
        True,
    ),
    "nul_in_content_key": (
        _send(content={"text": "hi", "\x00": 1}),
        _err("send", "content must not contain NUL (U+0000) characters"),
        True,
    ),
    "nul_in_temp_id": (
        _send(temp_id="t\x00"),
        _err("send", "temp_id must not contain NUL (U+0000) characters"),
        True,
    ),
    "temp_id_200_chars": (
        _send(temp_id="t" * 200),
        _err("send", "temp_id must be a string of at most 128 characters"),
        True,
    ),
    "temp_id_number": (
        _send(temp_id=5),
        _err("send", "temp_id must be a string of at most 128 characters"),
        True,
    ),
    "reply_to_float": (
        _send(reply_to_message_id=1.0, temp_id="t1"),
        _err("send", "reply_to_message_id must be an integer", temp_id="t1"),
        True,
    ),
    "reply_to_2_63": (
        _send(reply_to_message_id=2**63),
        _err("send", f"reply_to_message_id {BETWEEN}"),
        True,
    ),
    "reply_to_missing_message": (
        _send(reply_to_message_id=MAX_ID),
        _err("send", "reply_to_message_id not found in this room", room_id=ROOM),
        True,
    ),
    "last_read_2_64": (
        {"op": "ack", "room_id": ROOM, "last_read_message_id": 2**64},
        _err("ack", "last_read_message_id must be an integer"),  # decoded as a float
        True,
    ),
    "last_read_2_63": (
        {"op": "ack", "room_id": ROOM, "last_read_message_id": 2**63},
        _err("ack", f"last_read_message_id {BETWEEN}"),
        True,
    ),
    "last_read_true": (
        {"op": "ack", "room_id": ROOM, "last_read_message_id": True},
        _err("ack", "last_read_message_id must be an integer"),
        True,
    ),
    "last_read_minus_1": (
        {"op": "ack", "room_id": ROOM, "last_read_message_id": -1},
        _err("ack", f"last_read_message_id {BETWEEN}"),
        True,
    ),
    "last_read_zero": (
        {"op": "ack", "room_id": ROOM, "last_read_message_id": 0},
        _err("ack", f"last_read_message_id {BETWEEN}"),
        True,
    ),
    "last_read_string": (
        {"op": "ack", "room_id": ROOM, "last_read_message_id": "1"},
        _err("ack", "last_read_message_id must be an integer"),
        True,
    ),
    "last_read_ahead": (
        {"op": "ack", "room_id": ROOM, "last_read_message_id": MAX_ID},
        _err("ack", "last_read_message_id is ahead of the room's last message", room_id=ROOM),
        True,
    ),
    "join_other_room": (
        {"op": "join", "room_id": str(uuid.UUID(int=7))},
        _err("join", FORBIDDEN, room_id=str(uuid.UUID(int=7))),
        True,
    ),
}


def _materialize(frame: str | bytes | dict[str, Any], room: str) -> str | bytes:
    if isinstance(frame, dict):
        return json.dumps(frame).replace(ROOM, room)
    return frame


def _fill_room(expected: dict[str, Any], room: str) -> dict[str, Any]:
    return {k: room if v == ROOM else v for k, v in expected.items()}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_frame(settings: Settings, gateway_log: LogCapture, case: str) -> None:
    frame, expected, authenticate = HOSTILE[case]
    alice = uuid.uuid4()
    room = str(make_room(settings.database_url, alice))
    data = _materialize(frame, room)
    async with running_system(settings) as system, AsyncExitStack() as stack:
        conn = await connect(stack, system.url)
        with trio.fail_after(REPLY_TIMEOUT_S):
            if authenticate:
                succeed(await conn.exchange(json.dumps({"op": "auth", "token": str(alice)})))
            outcome = await conn.exchange(data)
            if isinstance(expected, int):
                assert isinstance(outcome, Closed), outcome
                assert outcome.code == expected, outcome
            else:
                assert outcome == _fill_room(expected, room)
                # The connection is still served.
                barrier = await conn.exchange('{"op":"barrier"}')
                assert barrier == _err("barrier", "unknown op")
                # A valid request still works after the hostile one.
                if not authenticate:
                    succeed(await conn.exchange(json.dumps({"op": "auth", "token": str(alice)})))
                ok = await conn.exchange(json.dumps({"op": "join", "room_id": room}))
                assert ok == {"op": "join", "success": True, "room_id": room}
    with db(settings.database_url) as c:
        assert c.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        marks = c.execute("SELECT last_read_message_id FROM arcyou_chat_members").fetchall()
        assert marks == [(None,)]
    assert_quiet(gateway_log)


@pytest.mark.parametrize(
    "number",
    [2**63 - 1, -(2**63 - 1), 9.2e18, -9.2e18, 1.5, 1e-300, 5e-324],
    ids=["2^63-1", "-(2^63-1)", "9.2e18", "-9.2e18", "1.5", "1e-300", "5e-324"],
)
async def test_content_numbers_within_limits_are_stored_and_delivered(
    settings: Settings, gateway_log: LogCapture, number: float
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = str(make_room(settings.database_url, alice, bob))
    frame = {"op": "send", "room_id": room, "content": {"text": "hi", "n": number}}
    async with running_system(settings) as system, AsyncExitStack() as stack:
        a = await connect(stack, system.url)
        with trio.fail_after(REPLY_TIMEOUT_S):
            succeed(await a.exchange(json.dumps({"op": "auth", "token": str(alice)})))
            succeed(await a.exchange(json.dumps({"op": "join", "room_id": room})))
            a.joined.add(room)
            message_id = succeed(await a.exchange(json.dumps(frame)))["message_id"]
            while not a.events:  # its live event arrives before the reply to a later request
                await a.exchange('{"op":"barrier"}')
                await trio.sleep(0.02)
        b = await connect(stack, system.url)
        with trio.fail_after(REPLY_TIMEOUT_S):
            succeed(await b.exchange(json.dumps({"op": "auth", "token": str(bob)})))
            b.joined.add(room)
            succeed(await b.exchange(json.dumps({"op": "join", "room_id": room})))
            await b.exchange('{"op":"barrier"}')
        for events in (a.events, b.events):
            assert [e["message"]["id"] for e in events] == [message_id]
            assert same_json(events[0]["message"]["content"], {"text": "hi", "n": number})
    assert_quiet(gateway_log)


async def test_huge_number_stored_by_other_means_is_still_delivered(
    settings: Settings, gateway_log: LogCapture
) -> None:
    """Validation refuses such numbers now, but rows written before (or by other tools) must
    not kill their live event or crash the joins that backfill them."""
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    async with running_system(settings) as system, AsyncExitStack() as stack:
        a = await connect(stack, system.url)
        with trio.fail_after(REPLY_TIMEOUT_S):
            succeed(await a.exchange(json.dumps({"op": "auth", "token": str(alice)})))
            succeed(await a.exchange(json.dumps({"op": "join", "room_id": str(room)})))
            a.joined.add(str(room))
            stored = await send_one(
                system.store,
                room_id=room,
                user_id=alice,
                type="text",
                content={"text": "old", "n": 2**64},
            )
            assert not isinstance(stored, Refusal)
            while not a.events:
                await a.exchange('{"op":"barrier"}')
                await trio.sleep(0.02)
        b = await connect(stack, system.url)
        with trio.fail_after(REPLY_TIMEOUT_S):
            succeed(await b.exchange(json.dumps({"op": "auth", "token": str(bob)})))
            b.joined.add(str(room))
            succeed(await b.exchange(json.dumps({"op": "join", "room_id": str(room)})))
            assert await b.exchange('{"op":"barrier"}') == _err("barrier", "unknown op")
        for events in (a.events, b.events):
            assert [e["message"]["id"] for e in events] == [stored.id]
            assert events[0]["message"]["content"]["text"] == "old"
            # jsonb's exact decimal of the number: 18446744073709551616 as stored.
            assert events[0]["message"]["content"]["n"] == 2**64
    with db(settings.database_url) as conn:
        assert conn.execute("SELECT status::text FROM outbox").fetchall() == [("published",)]
    assert_quiet(gateway_log)
