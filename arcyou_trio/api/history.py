"""Routes for a room's messages, read marks and search."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from arcyou_trio.api import schemas
from arcyou_trio.api.deps import Caller, Db, decode_offset, encode_offset

router = APIRouter(tags=["messages"])

Seq = Annotated[int | None, Query(ge=0, le=schemas.MAX_ID)]


@router.get(
    "/v1/rooms/{room_id}/messages",
    response_model=schemas.MessagePage,
    response_model_exclude_unset=True,
    summary="History",
)
async def list_messages(
    room_id: uuid.UUID,
    user: Caller,
    db: Db,
    before_seq: Seq = None,
    after_seq: Seq = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Ascending by ``seq``. Without a cursor: the newest page; ``before_seq`` pages back,
    ``after_seq`` forward; ``has_more`` says whether that direction has more."""
    items, more = await db.api_page(
        room_id, user, before_seq=before_seq, after_seq=after_seq, limit=limit
    )
    return {"items": [m.wire() for m in items], "has_more": more}


@router.get(
    "/v1/rooms/{room_id}/messages/{message_id}",
    response_model=schemas.Message,
    response_model_exclude_unset=True,
    summary="One message",
)
async def get_message(
    room_id: uuid.UUID,
    message_id: Annotated[int, Path(ge=1, le=schemas.MAX_ID)],
    user: Caller,
    db: Db,
) -> dict[str, Any]:
    return (await db.api_get_message(room_id, user, message_id)).wire()


@router.post(
    "/v1/rooms/{room_id}/read",
    response_model=schemas.ReadState,
    response_model_exclude_unset=True,
    summary="Move the read mark",
)
async def mark_read(
    room_id: uuid.UUID, body: schemas.ReadMark, user: Caller, db: Db
) -> dict[str, Any]:
    """Never moves backwards (like the WebSocket ``ack``)."""
    last_read, unread = await db.api_mark_read(room_id, user, body.message_id)
    return {"last_read_message_id": last_read, "unread_count": unread}


@router.get(
    "/v1/search/messages",
    response_model=schemas.SearchPage,
    response_model_exclude_unset=True,
    summary="Search",
)
async def search(
    user: Caller,
    db: Db,
    q: Annotated[str, Query(min_length=1, max_length=200, pattern=schemas.SEARCH_QUERY)],
    room_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The caller's rooms only, best match first. Words are matched as written; text with
    Korean (or other CJK) characters is matched as a substring."""
    offset = decode_offset(cursor)
    hits, more = await db.api_search(user, q, room_id=room_id, offset=offset, limit=limit)
    return {
        "items": [
            {"room_id": str(h.room_id), "message": h.message.wire(), "highlight": h.highlight}
            for h in hits
        ],
        "next_cursor": encode_offset(offset + len(hits)) if more else None,
    }
