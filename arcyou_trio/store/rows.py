"""The store's result types, and how a message row becomes a :class:`ChatMessage`.

:data:`MESSAGE_COLUMNS` is the select list every statement that returns messages uses (the send,
joins, pages), and :func:`message_from_row` maps such a row (a ``dict_row``). No statement runs
here.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.protocol.outcomes import Refusal

__all__ = [
    "ISO_TIMESTAMP",
    "MESSAGE_COLUMNS",
    "Backfill",
    "OutboxRow",
    "Page",
    "Refusal",
    "Sent",
    "message_from_row",
]

# The wire's timestamp format (JavaScript's toISOString), computed in SQL so that the outbox
# payload and backfill rows are byte-identical for the same message.
ISO_TIMESTAMP = """to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""

MESSAGE_COLUMNS = f"""
    id, room_id, user_id, type::text AS type, content, reply_to_message_id, temp_id, seq,
    {ISO_TIMESTAMP.format(col="created_at")} AS created_at
"""


def message_from_row(row: dict[str, Any]) -> ChatMessage:
    """A row with the :data:`MESSAGE_COLUMNS` (by name) as the message clients see."""
    return ChatMessage(
        id=row["id"],
        room_id=row["room_id"],
        user_id=row["user_id"],
        type=row["type"],
        content=row["content"],
        created_at=row["created_at"],
        seq=row["seq"],
        temp_id=row["temp_id"],
        reply_to_message_id=row["reply_to_message_id"],
    )


@attrs.frozen
class Sent:
    """A send the database accepted: the stored message, and whether it was stored earlier.

    ``duplicate`` means a message with the same (room, sender, temp_id) already existed (or came
    earlier in the same group commit): nothing was written, and ``message`` is that original.
    """

    message: ChatMessage
    duplicate: bool = False

    @property
    def id(self) -> int:
        """Shorthand for ``message.id`` (the id the send reply carries)."""
        return self.message.id


@attrs.frozen
class Page:
    """Messages of one room after a seq, oldest first, as of one snapshot.

    ``upto_seq`` is the highest seq the page covers: the last message's when the page is full,
    else everything the room had (deleted messages skipped, but covered); ``after_seq`` when
    there was nothing after it. ``last_seq`` is the room's newest seq in the same snapshot.
    """

    messages: list[ChatMessage]
    upto_seq: int
    last_seq: int


@attrs.frozen
class Backfill:
    """A successful join's view of the room: the member's read mark and what follows it.

    ``start_seq`` is the seq delivery starts after (that of the newest message at or below the
    join's starting id, 0 if none); ``messages`` is the first page after it, and ``upto_seq`` /
    ``last_seq`` are as in :class:`Page`.
    """

    read_upto: int
    messages: list[ChatMessage]
    start_seq: int
    upto_seq: int
    last_seq: int


@attrs.frozen
class OutboxRow:
    """An outbox row leased to a worker: the event to publish and how often it failed."""

    id: int
    room_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    attempts: int


@attrs.frozen
class RoomView:
    """A room as one member sees it (the HTTP API's room object)."""

    id: uuid.UUID
    name: str
    description: str | None
    created_at: str
    updated_at: str
    closed_at: str | None
    last_seq: int
    my_role: str
    unread_count: int
    last_message: ChatMessage | None


@attrs.frozen
class MemberView:
    user_id: uuid.UUID
    role: str
    last_read_message_id: int | None
    created_at: str


@attrs.frozen
class SearchHit:
    room_id: uuid.UUID
    message: ChatMessage
    #: HTML: the text escaped, the matches inside ``<mark>``.
    highlight: str
