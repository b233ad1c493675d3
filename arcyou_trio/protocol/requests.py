"""Client requests: frozen attrs classes, and their validation from decoded JSON with cattrs.

Validation produces a :class:`RequestError` whose ``error`` is the exact text of the
``success:false`` reply. The seed's strings (``room_id required``) are produced verbatim; other
messages name the field and what is wrong with it.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any, NewType

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError

from arcyou_trio.errors import ArcyouError

MAX_TEMP_ID_CHARS = 128
MAX_TOKEN_CHARS = 8192
MAX_OP_ECHO_CHARS = 32
MAX_MESSAGE_ID = (1 << 63) - 1
# A message id a client already has, 0 meaning none (join's since_message_id).
Position = NewType("Position", int)
# Deeper content could be stored but not encoded again as an event (orjson.dumps stops at 254).
MAX_CONTENT_DEPTH = 32
MAX_CONTENT_NUMBER = (1 << 63) - 1


class MessageType(enum.Enum):
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    SYSTEM = "system"


@attrs.frozen
class Auth:
    token: str


@attrs.frozen
class Join:
    room_id: uuid.UUID
    # Resume: the newest message id the client already has in this room (0: none). Without it
    # the join starts after the member's read mark (the seed's backfill).
    since_message_id: Position | None = None


@attrs.frozen
class Send:
    room_id: uuid.UUID
    content: dict[str, Any]
    type: MessageType = MessageType.TEXT
    temp_id: str | None = None
    reply_to_message_id: int | None = None


@attrs.frozen
class Ack:
    room_id: uuid.UUID
    last_read_message_id: int


Request = Auth | Join | Send | Ack

OPS: dict[str, type[Auth] | type[Join] | type[Send] | type[Ack]] = {
    "auth": Auth,
    "join": Join,
    "send": Send,
    "ack": Ack,
}


@attrs.frozen
class RequestError(ArcyouError):
    """A request that cannot be served; becomes ``{"op", "success": false, "error", ...}``."""

    op: str
    error: str
    temp_id: str | None = None
    room_id: str | None = None
    # Machine-readable cause, where one helps the client decide (e.g. "database_unavailable").
    reason: str | None = None


class _Missing(ValueError):
    """A required field is absent, null or empty."""


class _Invalid(ValueError):
    """A field is present with a wrong type or value; the message completes '<field> must ...'."""


def _uuid(value: Any, _: Any) -> uuid.UUID:
    if value is None or value == "":
        raise _Missing()
    if not isinstance(value, str) or len(value) > 64:
        raise _Invalid("must be a UUID")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _Invalid("must be a UUID") from None


def _str(value: Any, _: Any) -> str:
    if value is None or value == "":
        raise _Missing()
    if not isinstance(value, str):
        raise _Invalid("must be a string")
    return value


def _opt_str(value: Any, _: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEMP_ID_CHARS:
        raise _Invalid(f"must be a string of at most {MAX_TEMP_ID_CHARS} characters")
    if not value:
        # temp_id is the idempotency key of a send: an empty one shared by every message would
        # make each later send a "retry" of the first.
        raise _Invalid("must not be empty")
    if "\x00" in value:
        raise _Invalid("must not contain NUL (U+0000) characters")
    return value


def _id(value: Any, _: Any) -> int:
    if value is None:
        raise _Missing()
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("must be an integer")
    if not 0 < value <= MAX_MESSAGE_ID:
        raise _Invalid(f"must be between 1 and {MAX_MESSAGE_ID}")
    return value


def _opt_id(value: Any, type_: Any) -> int | None:
    return None if value is None else _id(value, type_)


def _opt_position(value: Any, _: Any) -> Position | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("must be an integer")
    if not 0 <= value <= MAX_MESSAGE_ID:
        raise _Invalid(f"must be between 0 and {MAX_MESSAGE_ID}")
    return Position(value)


def _content(value: Any, _: Any) -> dict[str, Any]:
    if value is None:
        raise _Missing()
    if not isinstance(value, dict):
        raise _Invalid("must be an object")
    _check_tree(value)
    return value


def _check_tree(value: Any) -> None:
    """Bound nesting and refuse NUL characters anywhere (keys too), without recursion.

    PostgreSQL cannot store U+0000 in text or jsonb; refusing it here gives the client a
    permanent error instead of a database failure it would retry forever.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise _Invalid("must not contain NUL (U+0000) characters")
        elif isinstance(item, int | float) and not isinstance(item, bool):
            # PostgreSQL's jsonb keeps numbers exactly, so 1e300 comes back as a 301-digit
            # integer that no JSON encoder on the way out accepts.
            if not -MAX_CONTENT_NUMBER <= item <= MAX_CONTENT_NUMBER:
                raise _Invalid("numbers must be between -2^63 and 2^63")
        elif isinstance(item, dict | list):
            if depth > MAX_CONTENT_DEPTH:
                raise _Invalid(f"must not nest deeper than {MAX_CONTENT_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def _msg_type(value: Any, _: Any) -> MessageType:
    if value is None:
        return MessageType.TEXT
    if value == "text":
        return MessageType.TEXT
    if isinstance(value, str) and value in {"image", "file", "system"}:
        raise _Invalid(f"'{value}' is not supported (only 'text')")
    raise _Invalid("must be 'text'")


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    conv.register_structure_hook(uuid.UUID, _uuid)
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(str | None, _opt_str)
    conv.register_structure_hook(int, _id)
    conv.register_structure_hook(int | None, _opt_id)
    conv.register_structure_hook(Position | None, _opt_position)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _content)
    conv.register_structure_hook(MessageType, _msg_type)
    return conv


_converter = _make_converter()


@attrs.frozen
class Limits:
    """Validation limits that come from settings."""

    max_text_chars: int = 4000


# Ops the server pushes: echoing one in a reply would make the reply look like a push.
SERVER_OPS = frozenset({"event"})


def op_of(obj: Any) -> str:
    """The op to echo in a reply to ``obj``: its op if it is a short string a client may send,
    else ``error``."""
    if isinstance(obj, dict):
        op = obj.get("op")
        if isinstance(op, str) and 0 < len(op) <= MAX_OP_ECHO_CHARS and op not in SERVER_OPS:
            return op
    return "error"


def temp_id_of(obj: Any) -> str | None:
    if isinstance(obj, dict):
        temp_id = obj.get("temp_id")
        if isinstance(temp_id, str) and len(temp_id) <= MAX_TEMP_ID_CHARS and "\x00" not in temp_id:
            return temp_id
    return None


def validate(obj: Any, limits: Limits) -> Request:
    """Turn a decoded JSON value into a request, or raise :class:`RequestError`."""
    if not isinstance(obj, dict):
        raise RequestError("error", "frame must be a JSON object")
    op = obj.get("op")
    if op is None:
        raise RequestError("error", "op required")
    cls = OPS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise RequestError(op_of(obj), "unknown op")
    # Only the fields the request class declares are structured; a missing key and an explicit
    # null are the same thing to a client, so both read as "required".
    data = {f.name: obj.get(f.name) for f in attrs.fields(cls) if obj.get(f.name) is not None}
    try:
        request: Request = _converter.structure(data, cls)
    except ClassValidationError as exc:
        raise RequestError(op, _describe(exc), temp_id_of(obj)) from None
    _check_semantics(request, op, limits)
    return request


def _describe(exc: ClassValidationError) -> str:
    # Report the first failing field in declaration order; one clear problem per reply.
    for sub in exc.exceptions:
        notes = [n for n in getattr(sub, "__notes__", []) if isinstance(n, AttributeValidationNote)]
        name = notes[0].name if notes else "request"
        if isinstance(sub, KeyError | _Missing):
            return f"{name} required"
        if isinstance(sub, _Invalid):
            return f"{name} {sub}"
        return f"{name} is invalid"
    return "invalid request"  # pragma: no cover - cattrs always carries at least one error


def _check_semantics(request: Request, op: str, limits: Limits) -> None:
    if isinstance(request, Auth) and len(request.token) > MAX_TOKEN_CHARS:
        raise RequestError(op, f"token must be at most {MAX_TOKEN_CHARS} characters")
    if isinstance(request, Send):
        text = request.content.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RequestError(op, "content.text must be a non-empty string", request.temp_id)
        if len(text) > limits.max_text_chars:
            raise RequestError(
                op,
                f"content.text too long (max {limits.max_text_chars} characters)",
                request.temp_id,
            )
