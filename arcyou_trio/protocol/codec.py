"""JSON codec for the wire: one place that turns frames into Python values and back.

orjson is strict where we want strictness: it rejects invalid UTF-8, NaN, integers beyond 64 bits
and nesting deeper than 1024 levels, so hostile frames fail here with a ``DecodeError``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


class DecodeError(ValueError):
    """The frame is not a JSON document we accept."""


def loads(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("invalid JSON") from exc


def dumps(value: Any) -> str:
    """Encode a reply or event as the text of one WebSocket text frame."""
    return orjson.dumps(value).decode()


def iso_ms(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, like JavaScript's ``Date.toISOString()``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_from_epoch_ms(epoch_ms: float) -> str:
    return iso_ms(datetime.fromtimestamp(epoch_ms / 1000, tz=UTC))
