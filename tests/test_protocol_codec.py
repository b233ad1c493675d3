"""Tests for the wire codec ``arcyou_trio.protocol.codec``.

Covers ``loads`` rejecting hostile input with ``DecodeError`` (invalid UTF-8, lone surrogates,
NaN/Infinity, out-of-range numbers, nesting beyond orjson's limit), ``dumps``/``loads`` round trips
for arbitrary JSON values, and the timestamp helpers ``iso_ms``/``iso_from_epoch_ms`` (format like
JavaScript's ``Date.toISOString()``; value = the UTC instant truncated to milliseconds).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcyou_trio.protocol import codec
from arcyou_trio.protocol.codec import DecodeError
from arcyou_trio.protocol.requests import Limits, RequestError, validate

FAST = settings(max_examples=200, deadline=None, database=None)
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)

# -- loads rejects hostile input -----------------------------------------------------------------


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)
    with pytest.raises(DecodeError, match="invalid JSON"):
        codec.loads("{")


@pytest.mark.parametrize(
    "data",
    [
        b'"\xff"',
        b"\x80",
        b'{"text": "\xc3\x28"}',
        b'"\xc0\xaf"',  # overlong encoding of '/'
        b'"\xed\xa0\x80"',  # UTF-8 encoded surrogate
        b'"\xf4\x90\x80\x80"',  # beyond U+10FFFF
        b'["ok", "\xe2\x82"]',  # truncated sequence
    ],
)
def test_loads_rejects_invalid_utf8(data: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.loads(data)


@pytest.mark.parametrize("data", ['"\\ud800"', '"\\udc00x"', '{"a": "\\ud83d"}'])
def test_loads_rejects_lone_surrogate_escapes(data: str) -> None:
    with pytest.raises(DecodeError):
        codec.loads(data)


def test_loads_accepts_valid_surrogate_pair_escape() -> None:
    assert codec.loads('"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize(
    "data",
    ["NaN", "-NaN", "Infinity", "-Infinity", '{"x": NaN}', "[Infinity]", "1e400", "-1e400"],
)
def test_loads_rejects_nan_and_infinity(data: str) -> None:
    with pytest.raises(DecodeError):
        codec.loads(data)


@pytest.mark.parametrize(
    "data",
    ["", " ", "{", "[1,]", "{'a': 1}", '{"a" 1}', "01", "[1] [2]", "undefined", "\x00"],
)
def test_loads_rejects_malformed_documents(data: str) -> None:
    with pytest.raises(DecodeError):
        codec.loads(data)


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 2**64 - 1])
def test_loads_keeps_64_bit_integers_exact(value: int) -> None:
    decoded = codec.loads(str(value))
    assert type(decoded) is int
    assert decoded == value


@pytest.mark.parametrize("data", [str(2**64), str(-(2**63) - 1), "1" + "0" * 30])
def test_integers_beyond_64_bits_decode_as_floats_and_fail_validation(data: str) -> None:
    # orjson decodes them as floats (no DecodeError); where the protocol wants an integer,
    # validation refuses the float, so such a number can never become a message id.
    assert isinstance(codec.loads(data), float)
    frame = {"op": "ack", "room_id": "00000000-0000-4000-8000-000000000000"}
    with pytest.raises(RequestError) as err:
        validate({**frame, "last_read_message_id": codec.loads(data)}, Limits())
    assert err.value.error == "last_read_message_id must be an integer"


@pytest.mark.parametrize(
    "data",
    [
        "[" * 2000 + "]" * 2000,
        '{"a":' * 2000 + "1" + "}" * 2000,
        '[{"a":' * 1000 + "[]" + "}]" * 1000,
    ],
)
def test_loads_rejects_deep_nesting(data: str) -> None:
    with pytest.raises(DecodeError):
        codec.loads(data)
    with pytest.raises(DecodeError):
        codec.loads(data.encode())


def test_loads_accepts_moderate_nesting() -> None:
    value = codec.loads("[" * 100 + "]" * 100)
    for _ in range(99):
        value = value[0]
    assert value == []


def test_content_that_could_not_be_encoded_again_is_refused() -> None:
    # loads accepts 1024 levels but dumps stops at 254: validation caps content depth, so
    # everything the gateway accepts can be encoded back into an event.
    deep = codec.loads('{"text": "hi", "x": ' + "[" * 300 + "]" * 300 + "}")
    frame = {"op": "send", "room_id": "00000000-0000-4000-8000-000000000000", "content": deep}
    with pytest.raises(RequestError) as err:
        validate(frame, Limits())
    assert err.value.error.startswith("content must not nest deeper than")
    shallow = codec.loads('{"text": "hi", "x": ' + "[" * 30 + "]" * 30 + "}")
    request = validate({**frame, "content": shallow}, Limits())
    assert codec.loads(codec.dumps(request.content)) == shallow  # type: ignore[union-attr]


# -- dumps / loads round trip --------------------------------------------------------------------

wire_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)
wire_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        wire_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(wire_text, children, max_size=5)
    ),
    max_leaves=25,
)


def _same(a: Any, b: Any) -> bool:
    """Equality that also distinguishes int from float and bool from int."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@FAST
@given(value=wire_values)
def test_dumps_loads_round_trip(value: Any) -> None:
    text = codec.dumps(value)
    assert isinstance(text, str)
    assert _same(codec.loads(text), value)
    assert _same(codec.loads(text.encode()), value)
    # The output is standard JSON that any decoder reads the same way.
    assert _same(json.loads(text), value)


@FAST
@given(value=wire_values)
def test_dumps_is_compact_and_deterministic(value: Any) -> None:
    assert codec.dumps(value) == codec.dumps(codec.loads(codec.dumps(value)))
    assert "\n" not in codec.dumps(value)


def test_dumps_reply_shape() -> None:
    reply = {"op": "send", "success": True, "message_id": 5, "temp_id": "é"}
    assert codec.dumps(reply) == '{"op":"send","success":true,"message_id":5,"temp_id":"é"}'


# -- timestamps ----------------------------------------------------------------------------------

fixed_offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
aware_datetimes = st.datetimes(
    # Keep one day away from the ends so the conversion to UTC cannot overflow, and in years
    # with four digits (years below 1000: test_iso_ms_pads_years_below_1000).
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.one_of(st.just(UTC), fixed_offsets, st.timezones()),
)


def _truncate_to_ms(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


@FAST
@given(moment=aware_datetimes)
def test_iso_ms_format_and_value(moment: datetime) -> None:
    text = codec.iso_ms(moment)
    assert ISO_MS.match(text), text
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert parsed == _truncate_to_ms(moment)
    assert timedelta(0) <= moment - parsed < ONE_MS


def test_iso_ms_examples() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert codec.iso_ms(datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) == "2024-05-01T12:00:00.000Z"
    moment = datetime(2024, 5, 1, 1, 2, 3, 999_999, tzinfo=plus_two)
    assert codec.iso_ms(moment) == "2024-04-30T23:02:03.999Z"
    assert codec.iso_ms(datetime(2024, 5, 1, 0, 0, 0, 1_500, tzinfo=UTC)).endswith(".001Z")


def test_iso_ms_pads_years_below_1000() -> None:
    assert codec.iso_ms(datetime(5, 1, 1, tzinfo=UTC)) == "0005-01-01T00:00:00.000Z"
    assert codec.iso_ms(datetime(999, 12, 31, tzinfo=UTC)) == "0999-12-31T00:00:00.000Z"


@FAST
@given(epoch_ms=st.integers(min_value=-(10**12), max_value=2**33 * 1000 - 1))
def test_iso_from_epoch_ms_matches_exact_arithmetic(epoch_ms: int) -> None:
    # Integer arithmetic, so exact for every whole millisecond; the range stops before 2242
    # (epoch seconds < 2**33), test_iso_from_epoch_ms_exact_far_future goes past it.
    text = codec.iso_from_epoch_ms(epoch_ms)
    assert ISO_MS.match(text), text
    assert text == codec.iso_ms(EPOCH + epoch_ms * ONE_MS)


def test_iso_from_epoch_ms_examples() -> None:
    assert codec.iso_from_epoch_ms(0) == "1970-01-01T00:00:00.000Z"
    assert codec.iso_from_epoch_ms(1_714_564_800_123) == "2024-05-01T12:00:00.123Z"
    assert codec.iso_from_epoch_ms(1_714_564_800_123.9) == "2024-05-01T12:00:00.123Z"
    assert codec.iso_from_epoch_ms(-1) == "1969-12-31T23:59:59.999Z"


def test_iso_from_epoch_ms_exact_far_future() -> None:
    assert codec.iso_from_epoch_ms(8_590_196_620_824) == "2242-03-19T13:43:40.824Z"
