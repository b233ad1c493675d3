"""Routes for rooms and their members (``/v1/rooms...``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from arcyou_trio.api import schemas
from arcyou_trio.api.deps import Caller, Db, decode_cursor, encode_cursor
from arcyou_trio.store.rows import MemberView, RoomView

router = APIRouter(prefix="/v1/rooms", tags=["rooms"])

Limit = Annotated[int, Query(ge=1, le=200, description="items per page")]
CursorQuery = Annotated[str | None, Query(max_length=200, description="next_cursor of a page")]


def room_body(room: RoomView) -> dict[str, Any]:
    return {
        "id": str(room.id),
        "name": room.name,
        "description": room.description,
        "created_at": room.created_at,
        "updated_at": room.updated_at,
        "closed_at": room.closed_at,
        "last_seq": room.last_seq,
        "my_role": room.my_role,
        "unread_count": room.unread_count,
        "last_message": None if room.last_message is None else room.last_message.wire(),
    }


def member_body(member: MemberView) -> dict[str, Any]:
    return {
        "user_id": str(member.user_id),
        "role": member.role,
        "last_read_message_id": member.last_read_message_id,
        "created_at": member.created_at,
    }


@router.post(
    "",
    status_code=201,
    response_model=schemas.Room,
    response_model_exclude_unset=True,
    summary="Create a room",
)
async def create_room(body: schemas.RoomCreate, user: Caller, db: Db) -> dict[str, Any]:
    """The caller becomes its owner, ``member_ids`` its participants."""
    room = await db.api_create_room(user, body.name, body.description, body.member_ids)
    return room_body(room)


@router.get(
    "",
    response_model=schemas.RoomPage,
    response_model_exclude_unset=True,
    summary="The caller's rooms",
)
async def list_rooms(
    user: Caller, db: Db, limit: Limit = 50, cursor: CursorQuery = None
) -> dict[str, Any]:
    """Latest activity first, each with the caller's role, unread count and last message."""
    rooms, after = await db.api_list_rooms(user, limit, decode_cursor(cursor))
    return {"items": [room_body(r) for r in rooms], "next_cursor": encode_cursor(after)}


@router.get(
    "/{room_id}", response_model=schemas.Room, response_model_exclude_unset=True, summary="One room"
)
async def get_room(room_id: uuid.UUID, user: Caller, db: Db) -> dict[str, Any]:
    return room_body(await db.api_get_room(room_id, user))


@router.patch(
    "/{room_id}",
    response_model=schemas.Room,
    response_model_exclude_unset=True,
    summary="Rename or describe a room",
)
async def update_room(
    room_id: uuid.UUID, body: schemas.RoomUpdate, user: Caller, db: Db
) -> dict[str, Any]:
    """Owner or manager. A ``room.updated`` system message records what changed."""
    changes: dict[str, str | None] = {}
    if body.name is not None:
        changes["name"] = body.name
    if "description" in body.model_fields_set:
        changes["description"] = body.description
    return room_body(await db.api_update_room(room_id, user, changes))


@router.delete("/{room_id}", status_code=204, summary="Close a room")
async def close_room(room_id: uuid.UUID, user: Caller, db: Db) -> Response:
    """Owner. No join, send or ack any more; the history stays readable."""
    await db.api_close_room(room_id, user)
    return Response(status_code=204)


@router.get(
    "/{room_id}/members",
    response_model=schemas.MemberPage,
    response_model_exclude_unset=True,
    summary="Members",
)
async def list_members(
    room_id: uuid.UUID, user: Caller, db: Db, limit: Limit = 50, cursor: CursorQuery = None
) -> dict[str, Any]:
    members, after = await db.api_list_members(room_id, user, limit, decode_cursor(cursor))
    return {"items": [member_body(m) for m in members], "next_cursor": encode_cursor(after)}


@router.put(
    "/{room_id}/members/{user_id}",
    response_model=schemas.Member,
    response_model_exclude_unset=True,
    responses={201: {"model": schemas.Member, "description": "added"}},
    summary="Add a member or change its role",
)
async def put_member(
    room_id: uuid.UUID,
    user_id: uuid.UUID,
    user: Caller,
    db: Db,
    response: Response,
    body: Annotated[schemas.MemberPut | None, Body()] = None,
) -> dict[str, Any]:
    """Owner: any role; manager: adds participants. 201 when added, 200 otherwise."""
    role = None if body is None or body.role is None else body.role.value
    member, added = await db.api_put_member(room_id, user, user_id, role)
    response.status_code = 201 if added else 200
    return member_body(member)


@router.delete("/{room_id}/members/{user_id}", status_code=204, summary="Remove or leave")
async def remove_member(room_id: uuid.UUID, user_id: uuid.UUID, user: Caller, db: Db) -> Response:
    """Owner: anyone; manager: participants; anyone: itself. The last owner cannot leave."""
    await db.api_remove_member(room_id, user, user_id)
    return Response(status_code=204)
