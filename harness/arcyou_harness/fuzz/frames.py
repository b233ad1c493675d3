"""The random frame generator: valid, mutated and hostile frames, reproducible from a seed.

:class:`FrameMaker` draws from one ``random.Random`` per connection: about a fifth valid
requests (aimed by what the connection knows of its own :class:`ConnState`), the rest mutated
requests, garbage text, invalid JSON, deep nesting, huge numbers, NaN/Infinity tokens, unicode
edge cases, binary frames and frames around ``MAX_BODY_BYTES``. :func:`encode` writes the JSON
by hand so that frames can carry repeated keys and raw tokens no encoder would produce.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import orjson


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
