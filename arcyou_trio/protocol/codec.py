"""JSON codec for the wire: one place that turns frames into Python values and back.

orjson is strict where we want strictness: it rejects invalid UTF-8, NaN and nesting deeper than
1024 levels, so hostile frames fail here with a ``DecodeError``. (Integers beyond 64 bits decode
as floats; request validation rejects those where an integer is expected, and limits nesting to
what :func:`dumps` can encode again.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson


class DecodeError(ValueError):
    """The frame is not a JSON document we accept."""


def loads(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("invalid JSON") from exc


def dumps_bytes(value: Any) -> bytes:
    """Encode a reply or event as the UTF-8 payload of one WebSocket text frame.

    orjson refuses integers beyond 64 bits; content stored before such numbers were refused
    (or written by other tools) must still be deliverable, so those fall back to the stdlib.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode()


def dumps(value: Any) -> str:
    """:func:`dumps_bytes` as text."""
    return dumps_bytes(value).decode()


def iso_ms(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, like JavaScript's ``Date.toISOString()``."""
    m = moment.astimezone(UTC)
    # Formatted by hand: strftime("%Y") does not zero-pad years below 1000 on glibc.
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_from_epoch_ms(epoch_ms: float) -> str:
    # Whole milliseconds in integer arithmetic: epoch_ms / 1000 as a float loses the last
    # millisecond for dates far in the future.
    return iso_ms(_EPOCH + timedelta(milliseconds=int(epoch_ms)))
