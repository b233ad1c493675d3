"""System messages: membership and room changes, written into a room's stream as messages.

Each add, removal, role change, room update and room close is stored (by the store, in the
same transaction as the change) as a message of type ``system`` whose ``content`` says what
happened. Members see them like chat messages: live, in backfill and in history, in seq order.
The gateway acts on two of them (:func:`ending_of`): after a member's ``member.removed`` (or a
``room.closed``) that member's connections get nothing more of the room. Pure.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any, Final

SYSTEM_TYPE: Final = "system"


class SystemEvent(enum.StrEnum):
    MEMBER_ADDED = "member.added"
    MEMBER_REMOVED = "member.removed"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    ROOM_UPDATED = "room.updated"
    ROOM_CLOSED = "room.closed"


class _Everyone(enum.Enum):
    EVERYONE = "everyone"


#: :func:`ending_of` for a message that ends the room for every member (``room.closed``).
EVERYONE: Final = _Everyone.EVERYONE

Ending = uuid.UUID | _Everyone | None


def member_added(user_id: uuid.UUID, role: str, by: uuid.UUID) -> dict[str, Any]:
    return {"event": SystemEvent.MEMBER_ADDED, "user_id": str(user_id), "role": role, "by": str(by)}


def member_removed(user_id: uuid.UUID, by: uuid.UUID) -> dict[str, Any]:
    """``by`` equals ``user_id`` when the member left by itself."""
    return {"event": SystemEvent.MEMBER_REMOVED, "user_id": str(user_id), "by": str(by)}


def member_role_changed(
    user_id: uuid.UUID, role: str, previous_role: str, by: uuid.UUID
) -> dict[str, Any]:
    return {
        "event": SystemEvent.MEMBER_ROLE_CHANGED,
        "user_id": str(user_id),
        "role": role,
        "previous_role": previous_role,
        "by": str(by),
    }


def room_updated(changes: dict[str, Any], by: uuid.UUID) -> dict[str, Any]:
    """``changes`` holds the fields that changed, with their new values."""
    return {"event": SystemEvent.ROOM_UPDATED, **changes, "by": str(by)}


def room_closed(by: uuid.UUID) -> dict[str, Any]:
    return {"event": SystemEvent.ROOM_CLOSED, "by": str(by)}


def ending_of(message_type: object, content: object) -> Ending:
    """Whose delivery of the room ends with this message: a user's (its removal), everyone's
    (the room closed) or nobody's (None). Tolerant: anything malformed ends nothing."""
    if message_type != SYSTEM_TYPE or not isinstance(content, dict):
        return None
    event = content.get("event")
    if event == SystemEvent.ROOM_CLOSED:
        return EVERYONE
    if event == SystemEvent.MEMBER_REMOVED:
        try:
            return uuid.UUID(str(content.get("user_id")))
        except ValueError:
            return None
    return None
