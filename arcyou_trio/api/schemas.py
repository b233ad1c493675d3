"""The API's request and response bodies as pydantic models: validation and the OpenAPI schema.

The ``message`` object is the WebSocket event's (:meth:`ChatMessage.wire`, one definition):
:class:`Message` only describes it for the OpenAPI document, and responses are built from
``wire()`` itself.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MAX_MEMBER_IDS = 1000
#: Ids and seqs are bigints; clients (JavaScript) hold them exactly up to 2^53 - 1.
MAX_ID = 2**53 - 1
#: Text PostgreSQL can store: no NUL character.
NO_NUL = r"^[^\x00]*$"
#: A search: something other than white space, and no NUL.
SEARCH_QUERY = r"^[^\x00]*[^\s\x00][^\x00]*$"
#: What a client is told when its text breaks one of the patterns above.
PATTERN_PROBLEMS = {
    NO_NUL: "must not contain NUL characters",
    SEARCH_QUERY: "must contain a character other than white space, and no NUL characters",
}


class Role(enum.StrEnum):
    owner = "owner"
    manager = "manager"
    participant = "participant"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoomCreate(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=NO_NUL)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS, pattern=NO_NUL)
    member_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_MEMBER_IDS)


class RoomUpdate(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS, pattern=NO_NUL)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS, pattern=NO_NUL)


class MemberPut(_Strict):
    role: Role | None = None


class ReadMark(_Strict):
    message_id: int = Field(ge=1, le=MAX_ID)


class Message(BaseModel):
    """A stored message, exactly as in the WebSocket ``message.created`` event."""

    id: int
    seq: int
    user_id: uuid.UUID
    type: str = Field(description="text, image, file or system")
    content: dict[str, Any]
    created_at: str = Field(description="RFC 3339, UTC, milliseconds")
    temp_id: str | None = Field(default=None, description="only when the sender gave one")
    reply_to_message_id: int | None = Field(default=None, description="only when given")


class Room(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    created_at: str
    updated_at: str
    closed_at: str | None
    last_seq: int
    my_role: Role
    unread_count: int
    last_message: Message | None


class RoomPage(BaseModel):
    items: list[Room]
    next_cursor: str | None


class Member(BaseModel):
    user_id: uuid.UUID
    role: Role
    last_read_message_id: int | None
    created_at: str


class MemberPage(BaseModel):
    items: list[Member]
    next_cursor: str | None


class MessagePage(BaseModel):
    items: list[Message]
    has_more: bool


class ReadState(BaseModel):
    last_read_message_id: int
    unread_count: int


class SearchHit(BaseModel):
    room_id: uuid.UUID
    message: Message
    highlight: str = Field(description="HTML: the text escaped, the matches inside <mark>")


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None


class Problem(BaseModel):
    """An error, as RFC 9457 ``application/problem+json``."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = Field(
        default=None, description="for 422: each field in error and what is wrong with it"
    )
