"""Hostile-client fuzzer: ``python -m arcyou_trio.fuzz --frames 100000``.

Starts a gateway and an outbox worker in this process (on 127.0.0.1, with the rate limit
raised so that every frame is processed), then drives ``--connections`` concurrent WebSocket
connections that send random frames as fast as the gateway answers: about a fifth valid
requests (so that the state machine gets past auth and join), the rest mutated requests,
garbage text, invalid JSON, deep nesting, huge numbers, NaN/Infinity tokens, unicode edge
cases, binary frames and frames around ``MAX_BODY_BYTES``. A connection the server closes is
reopened. Meanwhile a bystander in a room of its own keeps sending messages, each of which
must come back to it as a live event within ``--bystander-timeout``.

At the end it prints what happened and exits non-zero when something went wrong:

* a crash: a log record with a traceback, or at ERROR level;
* a reply that is not a JSON object with a string ``op`` and a boolean ``success`` (and a
  non-empty ``error`` on failure), a frame that got no reply, a close the frame did not call for
  (only oversize frames may close, with 1009), ``Service temporarily unavailable``;
* an event of a room the connection did not join (a leak), a bystander event missed;
* rows written that differ from the successful ``send`` replies, outbox rows not published,
  read marks that differ from the successful ``ack`` replies.

Without ``--database-url``/``--redis-url`` it starts throwaway PostgreSQL and Redis servers
(the same as ``arcyou-trio dev``) in a temporary directory. Given URLs must point at this
machine; the fuzzer only writes to rooms it creates, and only counts rows of those rooms.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import orjson
import psycopg
import trio
import trio_websocket

from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.bus import Bus
from arcyou_trio.client import open_websocket
from arcyou_trio.config import Settings
from arcyou_trio.devstack import LocalPostgres, LocalRedis
from arcyou_trio.gateway import serve_gateway
from arcyou_trio.store import Store, apply_migrations
from arcyou_trio.worker import OutboxWorker

UNAVAILABLE = "Service temporarily unavailable"
CLOSE_TOO_BIG = 1009
REPLY_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 15.0
# Time for connections to finish the frame in flight after the frame budget or time is used up.
DRAIN_GRACE_S = 30.0

# -- frames ---------------------------------------------------------------------------------------


@attrs.frozen
class Raw:
    """JSON text put into a frame verbatim."""

    text: str


Pairs = list[tuple[Any, Any]]


@attrs.frozen
class Obj:
    """A JSON object as key/value pairs (a key may repeat)."""

    pairs: tuple[tuple[Any, Any], ...]


def encode(value: Any) -> str:
    """Compact JSON for ``value``; :class:`Raw` is inserted as is, :class:`Obj` keeps repeats."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        items: Sequence[tuple[Any, Any]] = value.pairs
    elif isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        return "[" + ",".join(encode(v) for v in value) + "]"
    elif isinstance(value, str):
        return orjson.dumps(value).decode()
    elif value is None:
        return "null"
    elif isinstance(value, bool):
        return "true" if value else "false"
    else:
        return repr(value)  # ints of any size, finite floats
    return "{" + ",".join(f"{encode(k)}:{encode(v)}" for k, v in items) + "}"


NAUGHTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u2028\u2029",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    "e\u0301",
    "\ud55c\uad6d\uc5b4",
    "\x7f\x1b[31m",
    "\u200b",
    "null",
    "true",
    "-1",
    "{}",
    "__proto__",
    "%s%n",
    "' OR 1=1 --",
    "../../etc/passwd",
    "\u202eevil",
]
ESCAPES = [
    '"\\ud800"',
    '"\\udfff"',
    '"a\\ud800\\u0041"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"\\uFFFF"',
    '"\\x41"',
    '"\\u12"',
    '"\\uZZZZ"',
    '"\\/\\b\\f"',
]
NUMBER_TOKENS = [
    "18446744073709551616",
    "-1180591620717411303424",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1e20",
    "-1e19",
    "1e300",
    "1e400",
    "-1e400",
    "1" + "0" * 400,
    "5e-324",
    "1e-400",
    "-0",
    "0.0",
    "1.0",
]
BAD_TOKENS = ["NaN", "Infinity", "-Infinity", "+1", "01", ".5", "1.", "0x10", "1e", "--1", "nul"]
GARBAGE = [
    "",
    " ",
    "\n",
    "\t \r\n",
    "{",
    "}",
    "[",
    '"',
    "tru",
    "{,}",
    "{'op': 'auth'}",
    '{"op":"auth" "token":1}',
    '{"op":"send",}',
    "\ufeff{}",
    '{"op":"auth"}garbage',
    '{"op":"auth"}{"op":"auth"}',
]
UNKNOWN_OPS: list[Any] = ["event", "SEND", "Auth", "auth ", "leave", "x" * 33, "send\x00", ""]
BIG_CHARS = ["x", "\u00e9", "\ud55c", "\U0001f600"]  # 1 to 4 bytes of UTF-8

# Code points for random text: ASCII most of the time, then any plane (surrogates excluded:
# a text frame cannot carry them; they come as JSON escapes instead).
_RANGES = [(0x20, 0x7E)] * 6 + [(0x00, 0x1F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0x10FFFF)]


@attrs.define
class ConnState:
    """What a fuzzing connection knows of its own state (to aim its valid requests)."""

    user: str | None = None
    joined: set[str] = attrs.Factory(set)


@attrs.frozen
class Ids:
    rooms: list[str]  # rooms the fuzzing users are members of (not all of them of all)
    bystander_room: str
    ghost_room: str  # no such room
    users: list[str]  # one per fuzzing connection
    stranger: str  # a user of no room
    members: dict[str, set[str]]  # user -> rooms


class FrameMaker:
    """Random frames from one ``random.Random``: fast, and reproducible from the seed."""

    def __init__(self, rng: random.Random, ids: Ids, own_user: str, max_body_bytes: int) -> None:
        self.rng = rng
        self.ids = ids
        self.own_user = own_user
        self.max_body_bytes = max_body_bytes
        self.last_ids: dict[str, int] = {}  # room -> highest message id seen
        first = ids.rooms[0]
        self.room_refs = [
            *ids.rooms,
            *ids.rooms,
            ids.bystander_room,
            ids.ghost_room,
            first.upper(),
            "{" + first + "}",
            uuid.UUID(first).hex,
            "urn:uuid:" + first,
        ]
        self.bad_rooms = [
            "not-a-uuid",
            first + "0",
            first[:-1],
            " " + first,
            first + "\x00",
            "a" * 65,
        ]
        self.kinds: list[tuple[str, Callable[[ConnState], str | bytes]]] = [
            ("valid", self.valid),
            ("mutated", self.mutated),
            ("garbage", self.garbage),
            ("json", self.junk_json),
            ("deep", self.deep),
            ("binary", self.binary),
            ("big", self.big),
        ]
        self.weights = [20, 38, 12, 12, 5, 10, 3]

    def frame(self, state: ConnState) -> tuple[str, str | bytes]:
        kind, make = self.rng.choices(self.kinds, self.weights)[0]
        return kind, make(state)

    # -- building blocks -------------------------------------------------------------------

    def text(self, max_len: int = 24, *, nul: bool = True) -> str:
        rng = self.rng
        chars = []
        for _ in range(rng.randint(0, max_len)):
            lo, hi = rng.choice(_RANGES)
            c = rng.randint(lo, hi)
            if c == 0 and not nul:
                c = 0x20
            chars.append(chr(c))
        return "".join(chars)

    def scalar(self) -> Any:
        rng = self.rng
        pick = rng.randrange(11)
        if pick == 0:
            return None
        if pick == 1:
            return rng.random() < 0.5
        if pick == 2:
            return rng.randint(-(2**64), 2**64)
        if pick == 3:
            return rng.uniform(-1e20, 1e20)
        if pick == 4:
            return Raw(rng.choice(NUMBER_TOKENS))
        if pick == 5:
            return Raw(rng.choice(BAD_TOKENS)) if rng.random() < 0.2 else rng.randint(-10, 10)
        if pick == 6:
            return rng.choice(NAUGHTY)
        if pick == 7:
            return Raw(rng.choice(ESCAPES)) if rng.random() < 0.3 else self.text(8)
        return self.text()

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        pick = rng.random()
        if depth >= 4 or pick < 0.6:
            return self.scalar()
        if pick < 0.8:
            return [self.value(depth + 1) for _ in range(rng.randint(0, 4))]
        return Obj(tuple((self.key(), self.value(depth + 1)) for _ in range(rng.randint(0, 4))))

    def key(self) -> Any:
        rng = self.rng
        pick = rng.random()
        if pick < 0.6:
            return self.text(8)
        if pick < 0.8:
            return rng.choice(NAUGHTY)
        if pick < 0.9:
            return Raw(rng.choice(ESCAPES))
        return rng.choice(["text", "op", "room_id", "temp_id", "content", "id"])

    def clean_text(self) -> str:
        text = self.text(30, nul=False)
        return text if text.strip() else "hello"

    def message_id(self, room: str | None = None) -> int:
        rng = self.rng
        last = self.last_ids.get(room or "", 0)
        if last and rng.random() < 0.7:
            return rng.randint(max(1, last - 20), last)
        return rng.randint(1, max(10, last + 10))

    # -- requests --------------------------------------------------------------------------

    def request(self, state: ConnState) -> Pairs:
        rng = self.rng
        if state.user is None and rng.random() < 0.8:
            op = "auth"
        else:
            op = rng.choices(["auth", "join", "send", "ack"], [1, 3, 6, 3])[0]
        if op == "auth":
            token = (
                self.own_user
                if rng.random() < 0.8
                else rng.choice(
                    [self.ids.stranger, self.own_user.upper(), uuid.UUID(self.own_user).hex]
                )
            )
            return [("op", "auth"), ("token", token)]
        room = rng.choice(self.room_refs)
        canonical = _canonical(room)
        if op == "join":
            return [("op", "join"), ("room_id", room)]
        if op == "ack":
            return [
                ("op", "ack"),
                ("room_id", room),
                ("last_read_message_id", self.message_id(canonical)),
            ]
        content: Pairs = [("text", self.clean_text())]
        if rng.random() < 0.3:
            content.append(
                (self.text(6, nul=False), rng.choice([1, 2.5, "x", None, True, [1, {"a": 2}]]))
            )
        pairs: Pairs = [("op", "send"), ("room_id", room), ("content", Obj(tuple(content)))]
        if rng.random() < 0.5:
            pairs.append(("temp_id", self.text(12, nul=False)))
        if rng.random() < 0.15:
            pairs.append(("reply_to_message_id", self.message_id(canonical)))
        if rng.random() < 0.1:
            pairs.append(("type", "text"))
        return pairs

    def valid(self, state: ConnState) -> str:
        return encode(Obj(tuple(self.request(state))))

    def field_value(self) -> Any:
        rng = self.rng
        pick = rng.random()
        if pick < 0.55:
            return self.value()
        if pick < 0.7:
            return Raw(rng.choice(NUMBER_TOKENS))
        if pick < 0.8:
            return rng.choice(NAUGHTY)
        if pick < 0.85:
            return Raw(rng.choice(ESCAPES + BAD_TOKENS))
        if pick < 0.9:
            return Raw(self.nesting(rng.randint(1, 60)))
        if pick < 0.95:
            return rng.choice(BIG_CHARS) * rng.randint(3990, 4010)
        return "t" * rng.choice([127, 128, 129, 200, 8192, 8193])

    def mutated(self, state: ConnState) -> str:
        rng = self.rng
        pairs = self.request(state)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            kind = rng.choice(
                ["set", "set", "set", "content", "content", "drop", "extra", "dup", "op", "room"]
            )
            fields = [i for i, (k, _) in enumerate(pairs) if k != "op"]
            if kind == "set" and fields:
                i = rng.choice(fields)
                pairs[i] = (pairs[i][0], self.field_value())
            elif kind == "content":
                pairs = [(k, self.mutate_content(v) if k == "content" else v) for k, v in pairs]
            elif kind == "drop" and pairs:
                del pairs[rng.randrange(len(pairs))]
            elif kind == "extra":
                pairs.append(
                    (
                        rng.choice([self.key(), "temp_id", "type", "content", "token"]),
                        self.field_value(),
                    )
                )
            elif kind == "dup" and pairs:
                pairs.append((rng.choice(pairs)[0], self.field_value()))
            elif kind == "op":
                pairs = [(k, v) for k, v in pairs if k != "op"]
                op = rng.choice(UNKNOWN_OPS) if rng.random() < 0.6 else self.field_value()
                pairs.insert(rng.randint(0, len(pairs)), ("op", op))
            elif kind == "room":
                pairs = [(k, v) for k, v in pairs if k != "room_id"]
                room = rng.choice(self.bad_rooms) if rng.random() < 0.5 else self.field_value()
                pairs.append(("room_id", room))
        return encode(Obj(tuple(pairs)))

    def mutate_content(self, content: Any) -> Any:
        rng = self.rng
        if not isinstance(content, Obj) or rng.random() < 0.15:
            return self.field_value()
        texts = [(k, v) for k, v in content.pairs if k == "text"]
        others = [(k, v) for k, v in content.pairs if k != "text"]
        kind = rng.choice(["text", "text", "drop-text", "key", "long", "deep", "nul", "number"])
        if kind == "text":
            texts = [("text", self.field_value())]
        elif kind == "drop-text":
            texts = []
        elif kind == "long":
            texts = [("text", rng.choice(BIG_CHARS) * rng.randint(3995, 4005))]
        elif kind == "nul":
            texts = [("text", self.clean_text() + "\x00")]
        elif kind == "key":
            others.append((self.key(), self.value()))
        elif kind == "deep":
            others.append(("d", Raw(self.nesting(rng.randint(25, 40)))))
        else:
            others.append(("n", Raw(rng.choice(NUMBER_TOKENS))))
        return Obj(tuple(texts + others))

    # -- not requests ----------------------------------------------------------------------

    def garbage(self, state: ConnState) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.4:
            return self.text(rng.choice([8, 64, 400]))
        if pick < 0.7:
            return rng.choice(GARBAGE)
        text = self.valid(state)
        return text[: rng.randrange(len(text))]

    def junk_json(self, _: ConnState) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.3:
            return rng.choice(NUMBER_TOKENS + BAD_TOKENS)
        if pick < 0.4:
            return rng.choice(ESCAPES)
        if pick < 0.7:
            return encode(self.value())
        # An object without a usable op.
        return encode(Obj(tuple((self.key(), self.value()) for _ in range(rng.randint(0, 4)))))

    def nesting(self, depth: int) -> str:
        kind = self.rng.randrange(3)
        if kind == 0:
            return "[" * depth + "1" + "]" * depth
        if kind == 1:
            return '{"a":' * depth + "1" + "}" * depth
        half = depth // 2 + 1
        return '[{"a":' * half + "1" + "}]" * half

    def deep(self, state: ConnState) -> str:
        rng = self.rng
        depth = rng.choice([rng.randint(1, 40), rng.randint(1000, 1030), rng.randint(1, 2000)])
        text = self.nesting(depth)
        if rng.random() < 0.2:
            text = text[: len(text) - depth // 2]  # unbalanced
        if rng.random() < 0.5 and state.user is not None:
            room = rng.choice(self.ids.rooms)
            return f'{{"op":"send","room_id":"{room}","content":{{"text":"deep","d":{text}}}}}'
        return text

    def binary(self, _: ConnState) -> bytes:
        rng = self.rng
        size = rng.choice([0, 1, 2, 16, 64, 256, 4096])
        return rng.randbytes(size) if rng.random() < 0.8 else b'{"op":"auth","token":"x"}'

    def big(self, state: ConnState) -> str | bytes:
        """A frame within ±64 bytes of MAX_BODY_BYTES (half of them over: the server closes)."""
        rng = self.rng
        target = self.max_body_bytes + rng.randint(-64, 64)
        char = rng.choice(BIG_CHARS)
        if rng.random() < 0.1:
            return rng.randbytes(max(0, target))
        head = self.valid(state)[:-1] + ',"pad":"'
        room = target - len(head.encode()) - 2
        return head + char * max(0, room // len(char.encode())) + '"}'


def _canonical(room: str) -> str | None:
    try:
        return str(uuid.UUID(room))
    except ValueError:
        return None


def _size(data: str | bytes) -> int:
    return len(data) if isinstance(data, bytes) else len(data.encode())


# -- the run --------------------------------------------------------------------------------------


class CapturedLogs(logging.Handler):
    """Every WARNING-or-above record of any logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def crashes(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info or r.levelno >= logging.ERROR]

    @property
    def warnings(self) -> list[logging.LogRecord]:
        return [r for r in self.records if not (r.exc_info or r.levelno >= logging.ERROR)]


@attrs.define
class Report:
    frames: int = 0
    frames_by_kind: Counter[str] = attrs.Factory(Counter)
    replies: int = 0
    successes: Counter[str] = attrs.Factory(Counter)
    errors: Counter[str] = attrs.Factory(Counter)
    events: int = 0
    connections: int = 0
    closes: Counter[str] = attrs.Factory(Counter)  # "code reason" -> count
    unexpected_closes: list[str] = attrs.Factory(list)
    missing_replies: list[str] = attrs.Factory(list)
    malformed: list[str] = attrs.Factory(list)
    leaks: list[str] = attrs.Factory(list)
    unavailable: int = 0
    sends_ok: int = 0  # successful send replies, fuzzers and bystander
    marks: dict[tuple[str, str], int] = attrs.Factory(dict)  # (room, user) -> acked mark
    bystander_sent: int = 0
    bystander_received: int = 0
    bystander_missed: list[str] = attrs.Factory(list)
    latencies: list[float] = attrs.Factory(list)
    stopped_by_time: bool = False
    hard_stopped: bool = False
    fuzz_seconds: float = 0.0


def _note(bucket: list[str], text: str) -> None:
    bucket.append(text)


def _short(data: str | bytes, limit: int = 160) -> str:
    text = repr(data)
    return text if len(text) <= limit else f"{text[:limit]}...<{_size(data)} bytes>"


@attrs.define
class Budget:
    frames: int
    deadline: float  # trio clock

    def take(self, report: Report) -> bool:
        if report.frames >= self.frames:
            return False
        if trio.current_time() >= self.deadline:
            report.stopped_by_time = True
            return False
        report.frames += 1
        return True


def check_reply(obj: Any) -> str | None:
    """Why ``obj`` is not a well-formed reply, or None."""
    if not isinstance(obj, dict):
        return "not an object"
    if not isinstance(obj.get("op"), str):
        return "op is not a string"
    if not isinstance(obj.get("success"), bool):
        return "success is not a boolean"
    if not obj["success"] and not (isinstance(obj.get("error"), str) and obj["error"]):
        return "failure without an error string"
    return None


class Fuzzer:
    def __init__(
        self, url: str, ids: Ids, settings: Settings, report: Report, budget: Budget, seed: int
    ) -> None:
        self.url = url
        self.ids = ids
        self.settings = settings
        self.report = report
        self.budget = budget
        self.seed = seed
        self.done = False

    async def run_connection(self, index: int) -> None:
        user = self.ids.users[index]
        maker = FrameMaker(
            random.Random(f"{self.seed}:{index}"), self.ids, user, self.settings.max_body_bytes
        )
        while not self.done:
            self.report.connections += 1
            try:
                async with open_websocket(self.url) as ws:
                    await self._converse(ws, maker, user)
            except (OSError, trio.BrokenResourceError, trio_websocket.HandshakeError) as exc:
                _note(self.report.unexpected_closes, f"cannot connect: {exc!r}")
                await trio.sleep(0.1)

    async def _converse(
        self, ws: trio_websocket.WebSocketConnection, maker: FrameMaker, user: str
    ) -> None:
        report = self.report
        state = ConnState()
        while True:
            if not self.budget.take(report):
                self.done = True
                return
            kind, data = maker.frame(state)
            report.frames_by_kind[kind] += 1
            oversize = _size(data) > self.settings.max_body_bytes
            try:
                await ws.send_message(data)
                reply = await self._reply(ws, state, maker)
            except trio_websocket.ConnectionClosed as exc:
                code = None if exc.reason is None else int(exc.reason.code)
                reason = None if exc.reason is None else exc.reason.reason
                report.closes[f"{code} {reason or ''}".strip()] += 1
                expected = (oversize and code == CLOSE_TOO_BIG) or (
                    state.user is None and code == 1008 and reason == "authentication timeout"
                )
                if not expected:
                    _note(report.unexpected_closes, f"{code} {reason} after {kind} {_short(data)}")
                return
            except trio.TooSlowError:
                _note(report.missing_replies, f"{kind} {_short(data)}")
                return
            if oversize:
                _note(report.unexpected_closes, f"oversize {kind} frame answered: {reply}")
            self._account(reply, data, state, maker, user)

    async def _reply(
        self, ws: trio_websocket.WebSocketConnection, state: ConnState, maker: FrameMaker
    ) -> Any:
        """Read frames until the reply; check the events met on the way."""
        report = self.report
        with trio.fail_after(REPLY_TIMEOUT_S):
            while True:
                text = await ws.get_message()
                try:
                    obj = orjson.loads(text)
                except orjson.JSONDecodeError:
                    _note(report.malformed, f"not JSON: {_short(text)}")
                    continue
                if isinstance(obj, dict) and "success" in obj:
                    report.replies += 1
                    return obj
                if not (isinstance(obj, dict) and obj.get("op") == "event"):
                    _note(report.malformed, f"neither reply nor event: {_short(text)}")
                    continue
                report.events += 1
                room = obj.get("roomId")
                if room not in state.joined:
                    _note(
                        report.leaks,
                        f"event of {room} on a connection that joined {sorted(state.joined)}",
                    )
                message_id = obj.get("message", {}).get("id")
                if isinstance(room, str) and isinstance(message_id, int):
                    maker.last_ids[room] = max(maker.last_ids.get(room, 0), message_id)

    def _account(
        self, reply: Any, data: str | bytes, state: ConnState, maker: FrameMaker, user: str
    ) -> None:
        report = self.report
        problem = check_reply(reply)
        if problem is not None:
            _note(report.malformed, f"{problem}: {_short(str(reply))} for {_short(data)}")
            return
        op = reply["op"]
        if not reply["success"]:
            report.errors[reply["error"]] += 1
            if reply["error"] == UNAVAILABLE:
                report.unavailable += 1
            return
        report.successes[op] += 1
        if op == "auth":
            state.user = reply.get("userId")
            if state.user not in (user, self.ids.stranger):
                _note(report.leaks, f"auth as {state.user} with {_short(data)}")
            return
        rooms = self.ids.members.get(state.user or "", set())
        room = reply.get("room_id")
        if op == "join":
            if room not in rooms:
                _note(report.leaks, f"joined {room} as {state.user}, not a member")
            state.joined.add(str(room))
        elif op == "send":
            report.sends_ok += 1
            request = orjson.loads(data)
            target = _canonical(request["room_id"])
            if target not in rooms:
                _note(report.leaks, f"sent to {target} as {state.user}, not a member")
            if target is not None:
                maker.last_ids[target] = max(maker.last_ids.get(target, 0), reply["message_id"])
        elif op == "ack":
            if room not in rooms:
                _note(report.leaks, f"acked {room} as {state.user}, not a member")
            key = (str(room), str(state.user))
            mark = reply["last_read_message_id"]
            if not isinstance(mark, int) or mark < report.marks.get(key, 0):
                _note(report.malformed, f"ack mark went back: {reply}")
            else:
                report.marks[key] = mark
        else:
            _note(report.malformed, f"success of an unknown op: {reply}")

    async def bystander(self, user: str, room: str, stop: trio.Event, timeout_s: float) -> None:
        """Send, and wait for the live event of each message, until ``stop``."""
        report = self.report
        async with open_websocket(self.url) as ws:
            with trio.fail_after(REPLY_TIMEOUT_S):
                for frame in ({"op": "auth", "token": user}, {"op": "join", "room_id": room}):
                    await ws.send_message(orjson.dumps(frame).decode())
                    reply = orjson.loads(await ws.get_message())
                    if not reply.get("success"):
                        raise RuntimeError(f"bystander setup failed: {reply}")
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    await self._bystander_round(ws, room, n, timeout_s)
                except trio_websocket.ConnectionClosed as exc:
                    _note(report.bystander_missed, f"bystander connection closed: {exc.reason}")
                    return
                await trio.sleep(0.02)

    async def _bystander_round(
        self, ws: trio_websocket.WebSocketConnection, room: str, n: int, timeout_s: float
    ) -> None:
        report = self.report
        started = trio.current_time()
        frame = {"op": "send", "room_id": room, "content": {"text": f"still here {n}"}}
        await ws.send_message(orjson.dumps(frame).decode())
        report.bystander_sent += 1
        message_id: int | None = None
        with trio.move_on_after(timeout_s):
            while True:
                obj = orjson.loads(await ws.get_message())
                if obj.get("op") != "event":
                    if not obj.get("success"):
                        _note(report.bystander_missed, f"send {n} failed: {obj}")
                        return
                    message_id = obj["message_id"]
                    report.sends_ok += 1
                    continue
                if obj.get("roomId") != room:
                    _note(report.leaks, f"bystander got an event of {obj.get('roomId')}")
                if message_id is not None and obj["message"]["id"] == message_id:
                    report.bystander_received += 1
                    report.latencies.append(trio.current_time() - started)
                    return
        _note(report.bystander_missed, f"message {n} (id {message_id}) not back in {timeout_s} s")


# -- setup and accounting -------------------------------------------------------------------------


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname
    if host is None or host == "localhost" or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def local_servers(database_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    """The URLs to use: the given ones, or throwaway servers in a temporary directory."""
    with ExitStack() as stack:
        tmp: Path | None = None
        if database_url is None or redis_url is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="arcyou-fuzz-")))
        if database_url is None:
            assert tmp is not None
            pg = LocalPostgres(tmp / "postgres")
            pg.start()
            stack.callback(pg.stop)
            database_url = pg.create_database("arcyou_fuzz")
        if redis_url is None:
            assert tmp is not None
            redis = LocalRedis(tmp / "redis")
            redis.start()
            stack.callback(redis.stop)
            redis_url = redis.url
        yield database_url, redis_url


def create_rooms(database_url: str, connections: int) -> Ids:
    users = [str(uuid.uuid4()) for _ in range(connections)]
    stranger, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn:

        def room(name: str, members: Sequence[str]) -> str:
            row = conn.execute(
                "INSERT INTO arcyou_chat_rooms (name) VALUES (%s) RETURNING id", (name,)
            ).fetchone()
            assert row is not None
            for user in members:
                conn.execute(
                    "INSERT INTO arcyou_chat_members (room_id, user_id) VALUES (%s, %s)",
                    (row[0], user),
                )
            return str(row[0])

        layout = {"fuzz-all": users, "fuzz-all-2": users, "fuzz-half": users[::2]}
        rooms = {room(name, members): members for name, members in layout.items()}
        home = room("fuzz-bystander", [bystander])
    members = {u: {r for r, m in rooms.items() if u in m} for u in users}
    members[stranger] = set()
    members[bystander] = {home}
    return Ids(
        rooms=list(rooms),
        bystander_room=home,
        ghost_room=str(uuid.uuid4()),
        users=users,
        stranger=stranger,
        members=members,
    )


@attrs.frozen
class Rows:
    messages: int
    outbox: int
    unpublished: int
    dead: int
    dead_errors: list[str]
    marks: dict[tuple[str, str], int | None]


def count_rows(database_url: str, ids: Ids) -> Rows:
    rooms = [*ids.rooms, ids.bystander_room]
    with psycopg.connect(database_url, autocommit=True) as conn:

        def one(sql: str) -> Any:
            row = conn.execute(sql, (rooms,)).fetchone()
            assert row is not None
            return row[0]

        messages = one("SELECT count(*) FROM arcyou_chat_messages WHERE room_id::text = ANY(%s)")
        outbox = one("SELECT count(*) FROM outbox WHERE room_id::text = ANY(%s)")
        unpublished = one(
            "SELECT count(*) FROM outbox WHERE room_id::text = ANY(%s) AND status <> 'published'"
        )
        dead = one("SELECT count(*) FROM outbox WHERE room_id::text = ANY(%s) AND status = 'dead'")
        errors = conn.execute(
            "SELECT DISTINCT error FROM outbox WHERE room_id::text = ANY(%s) AND status = 'dead'"
            " LIMIT 5",
            (rooms,),
        ).fetchall()
        marks = {
            (str(room), str(user)): mark
            for room, user, mark in conn.execute(
                "SELECT room_id, user_id, last_read_message_id FROM arcyou_chat_members"
                " WHERE room_id::text = ANY(%s)",
                (rooms,),
            ).fetchall()
        }
    return Rows(messages, outbox, unpublished, dead, [str(e[0]) for e in errors], marks)


async def wait_settled(database_url: str, ids: Ids) -> Rows:
    deadline = trio.current_time() + SETTLE_TIMEOUT_S
    while True:
        rows = await trio.to_thread.run_sync(count_rows, database_url, ids)
        if rows.unpublished == rows.dead or trio.current_time() > deadline:
            return rows
        await trio.sleep(0.1)


def fuzz_settings(database_url: str, redis_url: str) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "HOST": "127.0.0.1",
            "PORT": "0",
            "JWT_PUBLIC_KEY": "dev-placeholder",
            "RL_BUCKET_CAPACITY": "1000000000",
            "OUTBOX_POLL_MS": "50",
            "WORKER_ID": f"fuzz-{uuid.uuid4().hex[:6]}",
            "REDIS_CHANNEL_PREFIX": f"fuzz-{uuid.uuid4().hex[:8]}:",
        }
    )


async def run(args: argparse.Namespace, settings: Settings, ids: Ids, report: Report) -> Rows:
    async with (
        Store.open(settings, wait=True) as store,
        Bus.open(settings.redis_url) as bus,
        trio.open_nursery() as system,
    ):
        listeners = await system.start(
            serve_gateway, settings, store, bus, verifier_from_settings(settings)
        )
        port = listeners[0].socket.getsockname()[1]
        await system.start(OutboxWorker(settings, store, bus).serve)
        url = f"ws://127.0.0.1:{port}"
        budget = Budget(args.frames, trio.current_time() + args.max_seconds)
        fuzzer = Fuzzer(url, ids, settings, report, budget, args.seed)
        stop = trio.Event()
        bystander_user = next(u for u, rooms in ids.members.items() if ids.bystander_room in rooms)
        started = trio.current_time()
        async with trio.open_nursery() as outer:
            outer.start_soon(
                fuzzer.bystander, bystander_user, ids.bystander_room, stop, args.bystander_timeout
            )
            with trio.move_on_after(args.max_seconds + DRAIN_GRACE_S) as hard_stop:
                async with trio.open_nursery() as fuzzers:
                    for i in range(args.connections):
                        fuzzers.start_soon(fuzzer.run_connection, i)
            report.hard_stopped = hard_stop.cancelled_caught
            report.fuzz_seconds = trio.current_time() - started
            stop.set()
        rows = await wait_settled(settings.database_url, ids)
        system.cancel_scope.cancel()
    return rows


def print_report(report: Report, rows: Rows, logs: CapturedLogs, wall_s: float, seed: int) -> bool:
    """Print the figures; True if the run found nothing wrong."""
    out = sys.stdout.write
    marks_expected = {key: report.marks.get(key) for key in rows.marks}
    bad_marks = {k: (v, marks_expected[k]) for k, v in rows.marks.items() if v != marks_expected[k]}
    crashes = logs.crashes
    rate = report.frames / report.fuzz_seconds if report.fuzz_seconds else 0.0
    out(f"\narcyou-trio fuzz (seed {seed}): {wall_s:.1f} s wall time in all\n")
    out(f"  fuzzing                {report.fuzz_seconds:.1f} s\n")
    out(f"  frames sent            {report.frames}  ({rate:.0f}/s)\n")
    out(f"  frames by kind         {dict(report.frames_by_kind.most_common())}\n")
    out(f"  replies received       {report.replies}\n")
    out(f"  successes by op        {dict(report.successes.most_common())}\n")
    out(f"  events received        {report.events}\n")
    out("  replies by error (top 15):\n")
    for error, n in report.errors.most_common(15):
        out(f"    {n:8d}  {error}\n")
    out(f"  connections opened     {report.connections}\n")
    out(f"  closed by the server   {dict(report.closes.most_common())}\n")
    latency = (
        f"max {max(report.latencies) * 1000:.0f} ms, median "
        f"{statistics.median(report.latencies) * 1000:.0f} ms"
        if report.latencies
        else "-"
    )
    out(
        f"  bystander              {report.bystander_sent} sent, {report.bystander_received} "
        f"events received, {len(report.bystander_missed)} missed; latency {latency}\n"
    )
    out(f"  crashes (log records with a traceback or at ERROR)  {len(crashes)}\n")
    for record in crashes[:5]:
        out(f"    {record.name}: {record.getMessage()[:300]}\n")
        if record.exc_info and record.exc_info[1] is not None:
            out(f"      {type(record.exc_info[1]).__name__}: {record.exc_info[1]}\n")
    out(f"  warnings logged        {len(logs.warnings)}\n")
    for message, n in Counter(r.getMessage()[:160] for r in logs.warnings).most_common(5):
        out(f"    {n:6d}  {message}\n")
    out(
        f"  rows written           {rows.messages} messages, {rows.outbox} outbox rows;"
        f" successful sends {report.sends_ok}\n"
    )
    unpublished = rows.unpublished - rows.dead
    out(
        f"  outbox                 {unpublished} unpublished, {rows.dead} dead {rows.dead_errors}\n"
    )
    out(f"  read marks             {len(rows.marks) - len(bad_marks)}/{len(rows.marks)} as acked\n")
    problems = {
        "unexpected closes": report.unexpected_closes,
        "missing replies": report.missing_replies,
        "malformed replies": report.malformed,
        "leaks": report.leaks,
        "bystander missed": report.bystander_missed,
        "read marks differ (db, acked)": [f"{k}: {v}" for k, v in bad_marks.items()],
    }
    for name, items in problems.items():
        out(f"  {name:22s} {len(items)}\n")
        for item in items[:5]:
            out(f"    {item}\n")
    if report.unavailable:
        out(f"  '{UNAVAILABLE}' replies: {report.unavailable}\n")
    if report.stopped_by_time:
        out("  stopped by --max-seconds before all frames were sent\n")
    if report.hard_stopped:
        out("  connections still busy after the grace period were cancelled\n")
    ok = (
        not crashes
        and not logs.warnings
        and not any(problems.values())
        and report.unavailable == 0
        and rows.messages == report.sends_ok
        and rows.outbox == report.sends_ok
        and rows.unpublished == 0
        and report.bystander_received == report.bystander_sent
        and not report.hard_stopped
    )
    out(f"  verdict                {'OK' if ok else 'FAILED'}\n")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m arcyou_trio.fuzz", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--frames", type=int, default=100_000, help="frames to send in all")
    parser.add_argument("--connections", type=int, default=8, help="concurrent fuzzing connections")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--database-url", help="PostgreSQL on this machine (default: a throwaway one)"
    )
    parser.add_argument("--redis-url", help="Redis on this machine (default: a throwaway one)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop sending after this")
    parser.add_argument(
        "--bystander-timeout",
        type=float,
        default=5.0,
        help="bound on the bystander's own events (s)",
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(2**32)
    for name in ("database_url", "redis_url"):
        url = getattr(args, name)
        if url is not None and not _is_local(url):
            parser.error(f"--{name.replace('_', '-')} must point at this machine (127.0.0.1)")
    if args.connections < 1 or args.frames < 0:
        parser.error("--connections must be >= 1 and --frames >= 0")

    logs = CapturedLogs()
    root = logging.getLogger()
    root.addHandler(logs)
    if root.getEffectiveLevel() > logging.WARNING:
        root.setLevel(logging.WARNING)
    started = time.monotonic()
    with local_servers(args.database_url, args.redis_url) as (database_url, redis_url):
        apply_migrations(database_url)
        settings = fuzz_settings(database_url, redis_url)
        ids = create_rooms(database_url, args.connections)
        report = Report()
        sys.stdout.write(
            f"fuzzing with {args.frames} frames over {args.connections} connections"
            f" (seed {args.seed})\n"
        )
        sys.stdout.flush()
        rows = trio.run(run, args, settings, ids, report)
    ok = print_report(report, rows, logs, time.monotonic() - started, args.seed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
