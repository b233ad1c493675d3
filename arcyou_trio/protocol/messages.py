"""Replies and events: what the server sends, as plain dicts ready for the codec.

Field names follow the seed exactly, including its mix of snake_case (``room_id``,
``message_id``) and camelCase (``userId``, ``roomId``).
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from arcyou_trio.protocol.requests import RequestError

EVENT_MESSAGE_CREATED = "message.created"
SOURCE_LIVE = "live"
SOURCE_BACKFILL = "backfill"


@attrs.frozen
class ChatMessage:
    """A stored message as clients see it (the ``message`` object of an event)."""

    id: int
    room_id: uuid.UUID
    user_id: uuid.UUID
    type: str
    content: dict[str, Any]
    created_at: str
    # The message's place in its room: 1, 2, 3, ... in commit order, without gaps.
    seq: int
    temp_id: str | None = None
    reply_to_message_id: int | None = None

    def wire(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "user_id": str(self.user_id),
            "type": self.type,
            "content": self.content,
            "created_at": self.created_at,
        }
        if self.temp_id is not None:
            obj["temp_id"] = self.temp_id
        if self.reply_to_message_id is not None:
            obj["reply_to_message_id"] = self.reply_to_message_id
        return obj


def message_event(
    room_id: str, message: dict[str, Any], *, source: str, timestamp: str
) -> dict[str, Any]:
    return {
        "op": "event",
        "type": EVENT_MESSAGE_CREATED,
        "roomId": room_id,
        "message": message,
        "timestamp": timestamp,
        "source": source,
    }


def error_reply(err: RequestError) -> dict[str, Any]:
    reply: dict[str, Any] = {"op": err.op, "success": False, "error": err.error}
    if err.room_id is not None:
        reply["room_id"] = err.room_id
    if err.temp_id is not None:
        reply["temp_id"] = err.temp_id
    if err.reason is not None:
        reply["reason"] = err.reason
    return reply


def auth_ok(user_id: uuid.UUID) -> dict[str, Any]:
    return {"op": "auth", "success": True, "userId": str(user_id)}


def join_ok(room_id: uuid.UUID) -> dict[str, Any]:
    return {"op": "join", "success": True, "room_id": str(room_id)}


def send_ok(message_id: int, temp_id: str | None) -> dict[str, Any]:
    reply: dict[str, Any] = {"op": "send", "success": True, "message_id": message_id}
    if temp_id is not None:
        reply["temp_id"] = temp_id
    return reply


def ack_ok(room_id: uuid.UUID, last_read_message_id: int) -> dict[str, Any]:
    return {
        "op": "ack",
        "success": True,
        "room_id": str(room_id),
        "last_read_message_id": last_read_message_id,
    }
