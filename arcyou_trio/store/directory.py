"""Rooms and members as the HTTP API manages them: who may do what, and the system messages.

Blocking functions over one psycopg connection, run on a pool thread by
:mod:`arcyou_trio.store.db`. Every change runs in one transaction that first locks the room's
row (:func:`lock_room`): changes to one room are serialised (so "a room keeps an owner" cannot
be raced past) and its system message (:mod:`arcyou_trio.store.system`) takes the room's next
seq exactly like a send. A room the caller is not a member of is :class:`NotFound`, like one
that does not exist.

Pages are keyset pages: a cursor is the sort key of the last item, ``(microseconds, uuid)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from arcyou_trio.errors import Conflict, NotFound, RoleRequired
from arcyou_trio.protocol import system
from arcyou_trio.store.rows import (
    ISO_TIMESTAMP,
    MESSAGE_COLUMNS,
    MemberView,
    RoomView,
    message_from_row,
)
from arcyou_trio.store.system import append_system_message

Cursor = tuple[int, uuid.UUID]

OWNER, MANAGER, PARTICIPANT = "owner", "manager", "participant"
ROLES = (OWNER, MANAGER, PARTICIPANT)


def _ts(col: str) -> str:
    return ISO_TIMESTAMP.format(col=col)


def _us(col: str) -> str:
    return f"(extract(epoch FROM {col}) * 1000000)::bigint"


# A room's latest activity: its last message or change (rooms.updated_at), else its creation.
_ACTIVITY = "COALESCE(r.updated_at, r.created_at)"

# One row per room of `mb` (the caller's memberships), with the last message's columns.
_ROOM_SELECT = f"""
SELECT r.id AS room_key, r.name, r.description,
       {_ts("r.created_at")} AS room_created_at, {_ts(_ACTIVITY)} AS room_updated_at,
       CASE WHEN r.closed_at IS NULL THEN NULL ELSE {_ts("r.closed_at")} END AS room_closed_at,
       {_us(_ACTIVITY)} AS sort_us, r.last_seq, mb.role::text AS my_role,
       r.last_seq - COALESCE(
           (SELECT rm.seq FROM arcyou_chat_messages rm
            WHERE rm.room_id = r.id AND rm.id <= mb.last_read_message_id
            ORDER BY rm.id DESC LIMIT 1), 0) AS unread_count,
       lm.*
FROM arcyou_chat_members mb
JOIN arcyou_chat_rooms r ON r.id = mb.room_id
LEFT JOIN LATERAL (
    SELECT {MESSAGE_COLUMNS} FROM arcyou_chat_messages
    WHERE id = r.last_message_id AND deleted_at IS NULL
) lm ON true
WHERE mb.user_id = %(user)s AND mb.deleted_at IS NULL
"""


def _keyset_page(
    rows: list[dict[str, Any]], limit: int, key: str
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """The first ``limit`` of ``limit + 1`` rows read, and the cursor after the last one if
    there were more."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, (int(rows[-1]["sort_us"]), rows[-1][key])


def _room_view(row: dict[str, Any]) -> RoomView:
    return RoomView(
        id=row["room_key"],
        name=row["name"],
        description=row["description"],
        created_at=row["room_created_at"],
        updated_at=row["room_updated_at"],
        closed_at=row["room_closed_at"],
        last_seq=int(row["last_seq"]),
        my_role=row["my_role"],
        unread_count=max(0, int(row["unread_count"])),
        last_message=None if row["id"] is None else message_from_row(row),
    )


def get_room(conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID) -> RoomView:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_ROOM_SELECT + " AND r.id = %(room)s", {"user": user, "room": room_id})
        row = cur.fetchone()
    if row is None:
        raise NotFound("room not found")
    return _room_view(row)


def list_rooms(
    conn: psycopg.Connection[Any], user: uuid.UUID, limit: int, after: Cursor | None
) -> tuple[list[RoomView], Cursor | None]:
    """The caller's rooms, latest activity (``updated_at``) first."""
    where = ""
    params: dict[str, Any] = {"user": user, "limit": limit + 1}
    if after is not None:
        where = f" AND ({_us(_ACTIVITY)}, r.id) < (%(us)s, %(id)s)"
        params.update(us=after[0], id=after[1])
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            _ROOM_SELECT + where + f" ORDER BY {_ACTIVITY} DESC, r.id DESC LIMIT %(limit)s",
            params,
        )
        rows = cur.fetchall()
    rows, cursor = _keyset_page(rows, limit, "room_key")
    return [_room_view(row) for row in rows], cursor


def create_room(
    conn: psycopg.Connection[Any],
    owner: uuid.UUID,
    name: str,
    description: str | None,
    member_ids: Sequence[uuid.UUID],
) -> RoomView:
    """A room with the caller as owner and ``member_ids`` (others than the caller) as
    participants."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO arcyou_chat_rooms (name, description) VALUES (%s, %s) RETURNING id",
            (name, description),
        )
        row = cur.fetchone()
        assert row is not None
        room_id: uuid.UUID = row[0]
        members = [(owner, OWNER)] + [
            (user, PARTICIPANT) for user in dict.fromkeys(member_ids) if user != owner
        ]
        cur.executemany(
            """
            INSERT INTO arcyou_chat_members (room_id, user_id, role)
            VALUES (%s, %s, %s::arcyou_chat_member_role)
            """,
            [(room_id, user, role) for user, role in members],
        )
    return get_room(conn, room_id, owner)


def lock_room(
    conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID, *, open_only: bool = True
) -> str:
    """Lock the room's row for this transaction; the caller's role. Raises NotFound if the
    caller is not a member, Conflict if the room is closed (unless not ``open_only``)."""
    row = conn.execute(
        """
        SELECT r.closed_at IS NOT NULL AS closed,
               (SELECT mb.role::text FROM arcyou_chat_members mb
                WHERE mb.room_id = r.id AND mb.user_id = %s AND mb.deleted_at IS NULL) AS role
        FROM arcyou_chat_rooms r WHERE r.id = %s FOR UPDATE
        """,
        (user, room_id),
    ).fetchone()
    if row is None or row[1] is None:
        raise NotFound("room not found")
    if open_only and row[0]:
        raise Conflict("the room is closed")
    return str(row[1])


def update_room(
    conn: psycopg.Connection[Any],
    room_id: uuid.UUID,
    user: uuid.UUID,
    changes: dict[str, str | None],
) -> RoomView:
    """Change ``name`` and/or ``description`` (owner, manager); a ``room.updated`` system
    message names what changed (nothing changed: no message)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        role = lock_room(conn, room_id, user)
        if role not in (OWNER, MANAGER):
            raise RoleRequired("changing the room needs the owner or manager role")
        cur.execute("SELECT name, description FROM arcyou_chat_rooms WHERE id = %s", (room_id,))
        current = cur.fetchone()
        assert current is not None
        changed = {k: v for k, v in changes.items() if current[k] != v}
        if changed:
            cur.execute(
                """
                UPDATE arcyou_chat_rooms
                SET name = COALESCE(%(name)s, name),
                    description = CASE WHEN %(set_description)s THEN %(description)s
                                       ELSE description END,
                    updated_at = now()
                WHERE id = %(room)s
                """,
                {
                    "room": room_id,
                    "name": changed.get("name"),
                    "set_description": "description" in changed,
                    "description": changed.get("description"),
                },
            )
            append_system_message(conn, room_id, user, system.room_updated(changed, user))
    return get_room(conn, room_id, user)


def close_room(conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID) -> None:
    """Close the room (owner): no join, send or ack any more; history stays. Closing a closed
    room again changes nothing."""
    with conn.transaction(), conn.cursor() as cur:
        role = lock_room(conn, room_id, user, open_only=False)
        if role != OWNER:
            raise RoleRequired("closing the room needs the owner role")
        cur.execute(
            "UPDATE arcyou_chat_rooms SET closed_at = now() WHERE id = %s AND closed_at IS NULL"
            " RETURNING id",
            (room_id,),
        )
        if cur.fetchone() is not None:
            append_system_message(conn, room_id, user, system.room_closed(user))


_MEMBER_COLUMNS = f"""user_id, role::text AS role, last_read_message_id,
    {_ts("created_at")} AS created_at, {_us("created_at")} AS sort_us"""


def _member_view(row: dict[str, Any]) -> MemberView:
    return MemberView(
        user_id=row["user_id"],
        role=row["role"],
        last_read_message_id=row["last_read_message_id"],
        created_at=row["created_at"],
    )


def list_members(
    conn: psycopg.Connection[Any],
    room_id: uuid.UUID,
    user: uuid.UUID,
    limit: int,
    after: Cursor | None,
) -> tuple[list[MemberView], Cursor | None]:
    """The room's members, oldest membership first (a member only)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        _require_member(conn, room_id, user)
        params: dict[str, Any] = {"room": room_id, "limit": limit + 1}
        where = ""
        if after is not None:
            where = f" AND ({_us('created_at')}, user_id) > (%(us)s, %(id)s)"
            params.update(us=after[0], id=after[1])
        cur.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM arcyou_chat_members"
            " WHERE room_id = %(room)s AND deleted_at IS NULL"
            + where
            + " ORDER BY created_at, user_id LIMIT %(limit)s",
            params,
        )
        rows = cur.fetchall()
    rows, cursor = _keyset_page(rows, limit, "user_id")
    return [_member_view(row) for row in rows], cursor


def _require_member(conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID) -> None:
    if _member_role(conn, room_id, user) is None:
        raise NotFound("room not found")


def _member_role(conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID) -> str | None:
    row = conn.execute(
        "SELECT role::text FROM arcyou_chat_members WHERE room_id = %s AND user_id = %s"
        " AND deleted_at IS NULL",
        (room_id, user),
    ).fetchone()
    return None if row is None else str(row[0])


def _other_owners(conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID) -> int:
    row = conn.execute(
        "SELECT count(*) FROM arcyou_chat_members WHERE room_id = %s AND user_id <> %s"
        " AND role = 'owner' AND deleted_at IS NULL",
        (room_id, user),
    ).fetchone()
    return int(row[0]) if row else 0


def put_member(
    conn: psycopg.Connection[Any],
    room_id: uuid.UUID,
    actor: uuid.UUID,
    target: uuid.UUID,
    role: str | None,
) -> tuple[MemberView, bool]:
    """Add ``target`` (``role``, default participant) or change its role; True if added.

    An owner may add with any role and change any role; a manager may add participants; the
    last owner cannot be demoted.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        actor_role = lock_room(conn, room_id, actor)
        current = actor_role if target == actor else _member_role(conn, room_id, target)
        if current is None:
            wanted = role or PARTICIPANT
            if actor_role == PARTICIPANT or (actor_role == MANAGER and wanted != PARTICIPANT):
                raise RoleRequired(
                    "adding a member needs the owner role (a manager may add participants)"
                )
            cur.execute(
                """
                INSERT INTO arcyou_chat_members (room_id, user_id, role)
                VALUES (%s, %s, %s::arcyou_chat_member_role)
                ON CONFLICT (room_id, user_id) DO UPDATE
                SET deleted_at = NULL, role = EXCLUDED.role, last_read_message_id = NULL,
                    created_at = now()
                """,
                (room_id, target, wanted),
            )
            append_system_message(conn, room_id, actor, system.member_added(target, wanted, actor))
            added = True
        elif role is not None and role != current:
            if actor_role != OWNER:
                raise RoleRequired("changing a role needs the owner role")
            if current == OWNER and _other_owners(conn, room_id, target) == 0:
                raise Conflict("the room's last owner cannot be demoted")
            cur.execute(
                "UPDATE arcyou_chat_members SET role = %s::arcyou_chat_member_role"
                " WHERE room_id = %s AND user_id = %s",
                (role, room_id, target),
            )
            append_system_message(
                conn, room_id, actor, system.member_role_changed(target, role, current, actor)
            )
            added = False
        else:
            added = False
        cur.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM arcyou_chat_members"
            " WHERE room_id = %s AND user_id = %s",
            (room_id, target),
        )
        row = cur.fetchone()
        assert row is not None
    return _member_view(row), added


def remove_member(
    conn: psycopg.Connection[Any], room_id: uuid.UUID, actor: uuid.UUID, target: uuid.UUID
) -> None:
    """Remove ``target`` (owner: anyone; manager: participants; anyone: itself). The last
    owner cannot leave."""
    with conn.transaction(), conn.cursor() as cur:
        actor_role = lock_room(conn, room_id, actor)
        current = actor_role if target == actor else _member_role(conn, room_id, target)
        if current is None:
            raise NotFound("member not found")
        if target != actor and not (
            actor_role == OWNER or (actor_role == MANAGER and current == PARTICIPANT)
        ):
            raise RoleRequired(
                "removing a member needs the owner role (a manager may remove participants)"
            )
        if current == OWNER and _other_owners(conn, room_id, target) == 0:
            raise Conflict("the room's last owner cannot leave; make another member owner first")
        cur.execute(
            "UPDATE arcyou_chat_members SET deleted_at = now() WHERE room_id = %s AND user_id = %s",
            (room_id, target),
        )
        append_system_message(conn, room_id, actor, system.member_removed(target, actor))
