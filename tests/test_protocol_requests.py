"""Tests for request validation in ``arcyou_trio.protocol.requests``.

Covers ``validate()``: every error string (table-driven, including the seed's exact
``room_id required``), which field is reported first, ``temp_id`` echoing on ``send`` errors,
``Limits.max_text_chars``, the ``op_of``/``temp_id_of`` echo helpers, a hypothesis fuzz over
arbitrary JSON values (only ``Auth``/``Join``/``Send``/``Ack`` or a well-formed ``RequestError``
may come out), and round trips from valid requests to dicts (and through the codec) and back.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcyou_trio.protocol import codec
from arcyou_trio.protocol.requests import (
    MAX_MESSAGE_ID,
    MAX_OP_ECHO_CHARS,
    MAX_TEMP_ID_CHARS,
    MAX_TOKEN_CHARS,
    Ack,
    Auth,
    Join,
    Limits,
    MessageType,
    Position,
    RequestError,
    Send,
    op_of,
    temp_id_of,
    validate,
)

FAST = settings(max_examples=200, deadline=None, database=None)

ROOM = "12345678-1234-5678-1234-567812345678"
ROOM_UUID = uuid.UUID(ROOM)
LIMITS = Limits()


def _error(obj: Any, limits: Limits = LIMITS) -> RequestError:
    with pytest.raises(RequestError) as info:
        validate(obj, limits)
    return info.value


def _send(**fields: Any) -> dict[str, Any]:
    return {"op": "send", "room_id": ROOM, "content": {"text": "hello"}, **fields}


def _ack(**fields: Any) -> dict[str, Any]:
    return {"op": "ack", "room_id": ROOM, "last_read_message_id": 7, **fields}


# -- happy paths -------------------------------------------------------------------------------


def test_valid_requests() -> None:
    assert validate({"op": "auth", "token": "abc"}, LIMITS) == Auth("abc")
    assert validate({"op": "join", "room_id": ROOM}, LIMITS) == Join(ROOM_UUID)
    assert validate(_ack(), LIMITS) == Ack(ROOM_UUID, 7)
    assert validate(_send(), LIMITS) == Send(ROOM_UUID, {"text": "hello"})
    full = _send(type="text", temp_id="t-1", reply_to_message_id=3, extra="ignored")
    assert validate(full, LIMITS) == Send(ROOM_UUID, {"text": "hello"}, MessageType.TEXT, "t-1", 3)


def test_optional_send_fields_may_be_null() -> None:
    request = validate(_send(type=None, temp_id=None, reply_to_message_id=None), LIMITS)
    assert request == Send(ROOM_UUID, {"text": "hello"})


def test_room_id_is_case_insensitive_and_canonicalised() -> None:
    request = validate({"op": "join", "room_id": ROOM.upper()}, LIMITS)
    assert request == Join(ROOM_UUID)


def test_message_id_bounds_are_inclusive() -> None:
    assert validate(_ack(last_read_message_id=1), LIMITS) == Ack(ROOM_UUID, 1)
    top = validate(_ack(last_read_message_id=MAX_MESSAGE_ID), LIMITS)
    assert top == Ack(ROOM_UUID, MAX_MESSAGE_ID)
    assert MAX_MESSAGE_ID == 2**63 - 1


def test_temp_id_and_token_length_limits_are_inclusive() -> None:
    long_temp = "t" * MAX_TEMP_ID_CHARS
    request = validate(_send(temp_id=long_temp), LIMITS)
    assert isinstance(request, Send)
    assert request.temp_id == long_temp
    long_token = "k" * MAX_TOKEN_CHARS
    assert validate({"op": "auth", "token": long_token}, LIMITS) == Auth(long_token)


# -- error table -------------------------------------------------------------------------------

INT_FIELD_CASES = [
    (True, "must be an integer"),
    (False, "must be an integer"),
    (1.0, "must be an integer"),
    (2.5, "must be an integer"),
    ("5", "must be an integer"),
    ([5], "must be an integer"),
    (0, f"must be between 1 and {MAX_MESSAGE_ID}"),
    (-1, f"must be between 1 and {MAX_MESSAGE_ID}"),
    (2**63, f"must be between 1 and {MAX_MESSAGE_ID}"),
    (2**100, f"must be between 1 and {MAX_MESSAGE_ID}"),
]

ERROR_CASES: list[tuple[str, Any, str, str]] = [
    # id, frame, expected op, expected error
    ("not-object-list", [], "error", "frame must be a JSON object"),
    ("not-object-str", "join", "error", "frame must be a JSON object"),
    ("not-object-null", None, "error", "frame must be a JSON object"),
    ("not-object-int", 3, "error", "frame must be a JSON object"),
    ("op-missing", {}, "error", "op required"),
    ("op-null", {"op": None, "room_id": ROOM}, "error", "op required"),
    ("op-unknown", {"op": "leave"}, "leave", "unknown op"),
    ("op-wrong-case", {"op": "JOIN", "room_id": ROOM}, "JOIN", "unknown op"),
    ("op-empty", {"op": ""}, "error", "unknown op"),
    ("op-int", {"op": 1}, "error", "unknown op"),
    ("op-list", {"op": ["join"]}, "error", "unknown op"),
    ("op-too-long", {"op": "x" * (MAX_OP_ECHO_CHARS + 1)}, "error", "unknown op"),
    ("op-max-echo", {"op": "x" * MAX_OP_ECHO_CHARS}, "x" * MAX_OP_ECHO_CHARS, "unknown op"),
    # auth
    ("auth-token-missing", {"op": "auth"}, "auth", "token required"),
    ("auth-token-null", {"op": "auth", "token": None}, "auth", "token required"),
    ("auth-token-empty", {"op": "auth", "token": ""}, "auth", "token required"),
    ("auth-token-int", {"op": "auth", "token": 5}, "auth", "token must be a string"),
    (
        "auth-token-too-long",
        {"op": "auth", "token": "k" * (MAX_TOKEN_CHARS + 1)},
        "auth",
        f"token must be at most {MAX_TOKEN_CHARS} characters",
    ),
]
for _op, _base in (
    ("join", {"op": "join"}),
    ("send", {"op": "send", "content": {"text": "hi"}}),
    ("ack", {"op": "ack", "last_read_message_id": 1}),
):
    ERROR_CASES += [
        (f"{_op}-room-missing", dict(_base), _op, "room_id required"),
        (f"{_op}-room-null", {**_base, "room_id": None}, _op, "room_id required"),
        (f"{_op}-room-empty", {**_base, "room_id": ""}, _op, "room_id required"),
        (f"{_op}-room-garbage", {**_base, "room_id": "not-a-uuid"}, _op, "room_id must be a UUID"),
        (f"{_op}-room-int", {**_base, "room_id": 12}, _op, "room_id must be a UUID"),
        (f"{_op}-room-false", {**_base, "room_id": False}, _op, "room_id must be a UUID"),
        (f"{_op}-room-list", {**_base, "room_id": [ROOM]}, _op, "room_id must be a UUID"),
        (f"{_op}-room-short", {**_base, "room_id": ROOM[:-1]}, _op, "room_id must be a UUID"),
        (f"{_op}-room-long", {**_base, "room_id": ROOM + "0" * 40}, _op, "room_id must be a UUID"),
    ]
ERROR_CASES += [
    # send: content
    ("send-content-missing", {"op": "send", "room_id": ROOM}, "send", "content required"),
    ("send-content-null", _send(content=None), "send", "content required"),
    ("send-content-str", _send(content="hi"), "send", "content must be an object"),
    ("send-content-empty-str", _send(content=""), "send", "content must be an object"),
    ("send-content-list", _send(content=[{"text": "hi"}]), "send", "content must be an object"),
    ("send-content-int", _send(content=0), "send", "content must be an object"),
    ("send-text-missing", _send(content={}), "send", "content.text must be a non-empty string"),
    (
        "send-text-null",
        _send(content={"text": None}),
        "send",
        "content.text must be a non-empty string",
    ),
    (
        "send-text-empty",
        _send(content={"text": ""}),
        "send",
        "content.text must be a non-empty string",
    ),
    (
        "send-text-blank",
        _send(content={"text": " \t\n "}),
        "send",
        "content.text must be a non-empty string",
    ),
    (
        "send-text-int",
        _send(content={"text": 5}),
        "send",
        "content.text must be a non-empty string",
    ),
    (
        "send-text-list",
        _send(content={"text": ["hi"]}),
        "send",
        "content.text must be a non-empty string",
    ),
    (
        "send-text-too-long",
        _send(content={"text": "x" * 4001}),
        "send",
        "content.text too long (max 4000 characters)",
    ),
    # send: type
    ("send-type-image", _send(type="image"), "send", "type 'image' is not supported (only 'text')"),
    ("send-type-file", _send(type="file"), "send", "type 'file' is not supported (only 'text')"),
    (
        "send-type-system",
        _send(type="system"),
        "send",
        "type 'system' is not supported (only 'text')",
    ),
    ("send-type-unknown", _send(type="video"), "send", "type must be 'text'"),
    ("send-type-upper", _send(type="TEXT"), "send", "type must be 'text'"),
    ("send-type-int", _send(type=1), "send", "type must be 'text'"),
    # send: temp_id
    (
        "send-temp-id-int",
        _send(temp_id=5),
        "send",
        f"temp_id must be a string of at most {MAX_TEMP_ID_CHARS} characters",
    ),
    (
        "send-temp-id-bool",
        _send(temp_id=True),
        "send",
        f"temp_id must be a string of at most {MAX_TEMP_ID_CHARS} characters",
    ),
    (
        "send-temp-id-object",
        _send(temp_id={"a": 1}),
        "send",
        f"temp_id must be a string of at most {MAX_TEMP_ID_CHARS} characters",
    ),
    (
        "join-since-negative",
        {"op": "join", "room_id": ROOM, "since_message_id": -1},
        "join",
        f"since_message_id must be between 0 and {MAX_MESSAGE_ID}",
    ),
    (
        "join-since-string",
        {"op": "join", "room_id": ROOM, "since_message_id": "5"},
        "join",
        "since_message_id must be an integer",
    ),
    (
        "send-temp-id-empty",
        _send(temp_id=""),
        "send",
        "temp_id must not be empty",
    ),
    (
        "send-temp-id-too-long",
        _send(temp_id="t" * (MAX_TEMP_ID_CHARS + 1)),
        "send",
        f"temp_id must be a string of at most {MAX_TEMP_ID_CHARS} characters",
    ),
    # ack: last_read_message_id
    (
        "ack-id-missing",
        {"op": "ack", "room_id": ROOM},
        "ack",
        "last_read_message_id required",
    ),
    ("ack-id-null", _ack(last_read_message_id=None), "ack", "last_read_message_id required"),
]
ERROR_CASES += [
    (
        f"ack-id-{value!r}"[:40],
        _ack(last_read_message_id=value),
        "ack",
        f"last_read_message_id {problem}",
    )
    for value, problem in INT_FIELD_CASES
]
ERROR_CASES += [
    (
        f"send-reply-to-{value!r}"[:40],
        _send(reply_to_message_id=value),
        "send",
        f"reply_to_message_id {problem}",
    )
    for value, problem in INT_FIELD_CASES
]


@pytest.mark.parametrize(
    ("frame", "op", "error"),
    [pytest.param(frame, op, error, id=case_id) for case_id, frame, op, error in ERROR_CASES],
)
def test_error_strings(frame: Any, op: str, error: str) -> None:
    err = _error(frame)
    assert (err.op, err.error) == (op, error)
    assert err.room_id is None


def test_error_case_ids_are_unique() -> None:
    ids = [case_id for case_id, *_ in ERROR_CASES]
    assert len(ids) == len(set(ids))


def test_seed_room_id_required_string_is_exact() -> None:
    for op in ("join", "send", "ack"):
        assert _error({"op": op}).error == "room_id required"


@pytest.mark.parametrize("max_text_chars", [1, 5, 4000])
def test_text_length_limit_comes_from_limits(max_text_chars: int) -> None:
    limits = Limits(max_text_chars=max_text_chars)
    at_limit = validate(_send(content={"text": "é" * max_text_chars}), limits)
    assert isinstance(at_limit, Send)
    err = _error(_send(content={"text": "é" * (max_text_chars + 1)}, temp_id="t"), limits)
    assert err.op == "send"
    assert err.error == f"content.text too long (max {max_text_chars} characters)"
    assert err.temp_id == "t"


def test_first_failing_field_in_declaration_order_is_reported() -> None:
    assert _error({"op": "send", "content": 5}).error == "room_id required"
    assert _error({"op": "send", "room_id": "x", "content": 5}).error == "room_id must be a UUID"
    assert _error(_send(type="video", temp_id=5)).error == "type must be 'text'"
    assert _error(_ack(room_id="x", last_read_message_id=0)).error == "room_id must be a UUID"


# -- temp_id echo on send errors -----------------------------------------------------------------

SEND_ERROR_FRAMES = [
    pytest.param({k: v for k, v in frame.items() if k != "temp_id"}, id=case_id)
    for case_id, frame, op, _error_text in ERROR_CASES
    if op == "send" and not case_id.startswith("send-temp-id")
]


@pytest.mark.parametrize("frame", SEND_ERROR_FRAMES)
@pytest.mark.parametrize("temp_id", ["t-1", "", "x" * MAX_TEMP_ID_CHARS])
def test_send_errors_carry_valid_temp_id(frame: dict[str, Any], temp_id: str) -> None:
    err = _error({**frame, "temp_id": temp_id})
    assert err.op == "send"
    assert err.temp_id == temp_id


@pytest.mark.parametrize("temp_id", [5, None, True, ["t"], "x" * (MAX_TEMP_ID_CHARS + 1)])
def test_send_errors_drop_invalid_temp_id(temp_id: Any) -> None:
    err = _error(_send(content="nope", temp_id=temp_id))
    assert err.temp_id is None


def test_op_of_and_temp_id_of() -> None:
    assert op_of({"op": "send"}) == "send"
    assert op_of({"op": ""}) == "error"
    assert op_of({"op": "x" * (MAX_OP_ECHO_CHARS + 1)}) == "error"
    assert op_of({"op": 3}) == "error"
    assert op_of(["op"]) == "error"
    assert op_of(None) == "error"
    assert temp_id_of({"temp_id": "a"}) == "a"
    assert temp_id_of({"temp_id": 1}) is None
    assert temp_id_of({"temp_id": "x" * (MAX_TEMP_ID_CHARS + 1)}) is None
    assert temp_id_of("temp_id") is None


# -- fuzzing -------------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
uuid_like = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.text(alphabet="0123456789abcdef-{}", max_size=40),
)
id_like = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=2**63 - 3, max_value=2**63 + 3),
    st.integers(),
    st.booleans(),
    st.floats(),
)
text_like = st.one_of(st.text(max_size=10), st.just(" "), st.text(min_size=4000, max_size=4002))
content_like = st.one_of(
    st.fixed_dictionaries({"text": st.one_of(text_like, json_scalars)}),
    st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
)
field_values = {
    "room_id": uuid_like,
    "token": st.one_of(st.text(max_size=20), st.text(min_size=8190, max_size=8194)),
    "content": content_like,
    "type": st.sampled_from(["text", "image", "file", "system", "video", "TEXT"]),
    "temp_id": st.one_of(st.text(max_size=5), st.text(min_size=127, max_size=130)),
    "last_read_message_id": id_like,
    "reply_to_message_id": id_like,
}


def _frames_with_op(op: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    # Every request field may appear, with a plausible value or any JSON value, plus extras.
    return st.fixed_dictionaries(
        {"op": op},
        optional={
            **{name: st.one_of(strategy, json_values) for name, strategy in field_values.items()},
            "extra": json_values,
        },
    )


op_frames = _frames_with_op(st.sampled_from(["auth", "join", "send", "ack"]))
odd_op_frames = _frames_with_op(st.one_of(st.just("other"), json_scalars))
VALID_FRAMES = [
    {"op": "auth", "token": "tok"},
    {"op": "join", "room_id": ROOM},
    {"op": "ack", "room_id": ROOM, "last_read_message_id": 9},
    {
        "op": "send",
        "room_id": ROOM,
        "content": {"text": "hi"},
        "type": "text",
        "temp_id": "t",
        "reply_to_message_id": 2,
    },
]


@st.composite
def near_valid_frames(draw: st.DrawFn) -> dict[str, Any]:
    """A valid frame with up to two fields deleted or replaced (plausibly or arbitrarily)."""
    frame = dict(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        name = draw(st.sampled_from([*field_values, "op"]))
        action = draw(st.sampled_from(["delete", "plausible", "any"]))
        if action == "delete":
            frame.pop(name, None)
        elif action == "plausible" and name in field_values:
            frame[name] = draw(field_values[name])
        else:
            frame[name] = draw(json_values)
    return frame


frames = st.one_of(json_values, op_frames, odd_op_frames, near_valid_frames())


def _check_outcome(obj: Any, limits: Limits) -> None:
    try:
        request = validate(obj, limits)
    except RequestError as err:
        assert isinstance(err.error, str)
        assert 0 < len(err.error) <= 200
        assert isinstance(err.op, str)
        assert 0 < len(err.op) <= MAX_OP_ECHO_CHARS
        assert err.temp_id is None or (
            isinstance(err.temp_id, str) and len(err.temp_id) <= MAX_TEMP_ID_CHARS
        )
        if err.op != "error":
            assert err.op == obj["op"]
        return
    assert isinstance(obj, dict)
    assert isinstance(request, Auth | Join | Send | Ack)
    assert type(request).__name__.lower() == obj["op"]
    if isinstance(request, Auth):
        assert isinstance(request.token, str)
        assert 0 < len(request.token) <= MAX_TOKEN_CHARS
        return
    assert isinstance(request.room_id, uuid.UUID)
    if isinstance(request, Ack):
        assert type(request.last_read_message_id) is int
        assert 1 <= request.last_read_message_id <= MAX_MESSAGE_ID
    if isinstance(request, Send):
        text = request.content["text"]
        assert isinstance(text, str)
        assert text.strip()
        assert len(text) <= limits.max_text_chars
        assert request.type is MessageType.TEXT
        assert request.temp_id is None or len(request.temp_id) <= MAX_TEMP_ID_CHARS
        reply_to = request.reply_to_message_id
        assert reply_to is None or (type(reply_to) is int and 1 <= reply_to <= MAX_MESSAGE_ID)


@FAST
@given(obj=json_values)
def test_arbitrary_json_never_raises_anything_else(obj: Any) -> None:
    _check_outcome(obj, LIMITS)


@settings(FAST, max_examples=400)
@given(obj=op_frames, max_text_chars=st.integers(min_value=1, max_value=5000))
def test_arbitrary_op_frames_never_raise_anything_else(obj: Any, max_text_chars: int) -> None:
    _check_outcome(obj, Limits(max_text_chars=max_text_chars))


@settings(FAST, max_examples=400)
@given(obj=near_valid_frames(), max_text_chars=st.integers(min_value=1, max_value=5000))
def test_near_valid_frames_never_raise_anything_else(obj: Any, max_text_chars: int) -> None:
    _check_outcome(obj, Limits(max_text_chars=max_text_chars))


@FAST
@given(obj=odd_op_frames)
def test_unknown_or_malformed_op_is_rejected(obj: Any) -> None:
    err = _error(obj)
    assert err.error == ("op required" if obj["op"] is None else "unknown op")
    assert err.op == op_of(obj)


@FAST
@given(obj=frames)
def test_validate_does_not_mutate_its_input(obj: Any) -> None:
    snapshot = repr(obj)
    with contextlib.suppress(RequestError):
        validate(obj, LIMITS)
    assert repr(obj) == snapshot


# -- round trips ---------------------------------------------------------------------------------

# Values that survive a trip through JSON unchanged (no NaN/inf, 64-bit ints).
# Strings as PostgreSQL can store them: no NUL (validation refuses U+0000, see below).
storable_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20
)
wire_scalars = st.one_of(
    st.none(),
    st.booleans(),
    # Content numbers must fit in 64 bits (jsonb would hand larger ones back as huge integers).
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-9e18, max_value=9e18),
    storable_text,
)
nonblank_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=50
).filter(lambda s: bool(s.strip()))
valid_sends = st.builds(
    Send,
    room_id=st.uuids(),
    content=st.builds(
        lambda text, extra: {**extra, "text": text},
        nonblank_text,
        st.dictionaries(storable_text, wire_scalars, max_size=3),
    ),
    type=st.just(MessageType.TEXT),
    temp_id=st.none()
    | st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
        min_size=1,
        max_size=MAX_TEMP_ID_CHARS,
    ),
    reply_to_message_id=st.none() | st.integers(min_value=1, max_value=MAX_MESSAGE_ID),
)


def _send_to_dict(send: Send, *, omit_none: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "op": "send",
        "room_id": str(send.room_id),
        "content": send.content,
        "type": send.type.value,
        "temp_id": send.temp_id,
        "reply_to_message_id": send.reply_to_message_id,
    }
    if omit_none:
        obj = {k: v for k, v in obj.items() if v is not None}
    return obj


@FAST
@given(send=valid_sends, omit_none=st.booleans())
def test_valid_send_round_trips(send: Send, omit_none: bool) -> None:
    assert validate(_send_to_dict(send, omit_none=omit_none), LIMITS) == send


@FAST
@given(send=valid_sends)
def test_valid_send_round_trips_through_the_codec(send: Send) -> None:
    wire = codec.dumps(_send_to_dict(send, omit_none=False))
    assert validate(codec.loads(wire), LIMITS) == send


@FAST
@given(
    room_id=st.uuids(),
    message_id=st.integers(min_value=1, max_value=MAX_MESSAGE_ID),
    token=st.text(min_size=1, max_size=100),
)
def test_other_valid_requests_round_trip(room_id: uuid.UUID, message_id: int, token: str) -> None:
    assert validate({"op": "join", "room_id": str(room_id)}, LIMITS) == Join(room_id)
    resume = {"op": "join", "room_id": str(room_id), "since_message_id": message_id}
    assert validate(resume, LIMITS) == Join(room_id, Position(message_id))
    ack = {"op": "ack", "room_id": str(room_id), "last_read_message_id": message_id}
    assert validate(ack, LIMITS) == Ack(room_id, message_id)
    assert validate({"op": "auth", "token": token}, LIMITS) == Auth(token)


@pytest.mark.parametrize(
    "frame",
    [
        {"content": {"text": "a\x00b"}},
        {"content": {"text": "ok", "meta": {"k\x00": 1}}},
        {"content": {"text": "ok", "list": ["x", ["\x00"]]}},
        {"content": {"text": "ok"}, "temp_id": "t\x00"},
    ],
    ids=["text", "key", "nested", "temp_id"],
)
def test_nul_characters_are_refused(frame: dict[str, Any]) -> None:
    base = {"op": "send", "room_id": "00000000-0000-4000-8000-000000000000"}
    with pytest.raises(RequestError) as err:
        validate({**base, **frame}, Limits())
    assert "must not contain NUL (U+0000) characters" in err.value.error


@pytest.mark.parametrize("number", [2**63, -(2**64), 1e19, -1e300, float(2**63)])
def test_content_numbers_beyond_64_bits_are_refused(number: float) -> None:
    frame = {
        "op": "send",
        "room_id": "00000000-0000-4000-8000-000000000000",
        "content": {"text": "ok", "n": [number]},
    }
    with pytest.raises(RequestError) as err:
        validate(frame, Limits())
    assert err.value.error == "content numbers must be between -2^63 and 2^63"


def test_replies_never_echo_a_server_op() -> None:
    with pytest.raises(RequestError) as err:
        validate({"op": "event"}, Limits())
    assert err.value.op == "error" and err.value.error == "unknown op"
