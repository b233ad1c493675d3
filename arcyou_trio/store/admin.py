"""Blocking administrative helpers (dev launcher, operators): sample data, room setup.

Not used on the request path; these open their own short-lived connection.
"""

from __future__ import annotations

import uuid

import psycopg

from arcyou_trio.errors import StoreUnavailable
from arcyou_trio.store.rooms import create_room

SAMPLE_ROOM_NAME = "arcyou-dev-sample"


def ensure_sample_room(conninfo: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """The dev sample room and its members, created with two new users on first call."""
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT id FROM arcyou_chat_rooms WHERE name = %s ORDER BY created_at LIMIT 1",
                (SAMPLE_ROOM_NAME,),
            ).fetchone()
            if row is None:
                users = [uuid.uuid4(), uuid.uuid4()]
                room_id = create_room(
                    conn,
                    SAMPLE_ROOM_NAME,
                    [(users[0], "owner"), (users[1], "participant")],
                    "created by arcyou-trio dev",
                )
            else:
                room_id = row[0]
            members = conn.execute(
                "SELECT user_id FROM arcyou_chat_members"
                " WHERE room_id = %s AND deleted_at IS NULL ORDER BY created_at, user_id",
                (room_id,),
            ).fetchall()
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot reach PostgreSQL: {' '.join(str(exc).split())}") from exc
    return room_id, [m[0] for m in members]
