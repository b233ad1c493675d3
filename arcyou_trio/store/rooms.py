"""Setting up rooms and members (admin, dev tools, tests, harnesses), and the health ping.

Blocking functions over one psycopg connection (autocommit, like the pool's), run directly by
those tools or on a pool thread by :mod:`arcyou_trio.store.db`; none is on the request path.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg


def create_room(
    conn: psycopg.Connection[Any],
    name: str,
    members: Sequence[tuple[uuid.UUID, str]],
    description: str | None = None,
) -> uuid.UUID:
    """A new room with ``members`` as (user id, role), in one transaction; returns its id.

    A role is an ``arcyou_chat_member_role`` (``owner``, ``participant``, ...).
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO arcyou_chat_rooms (name, description) VALUES (%s, %s) RETURNING id",
            (name, description),
        )
        row = cur.fetchone()
        assert row is not None
        room_id: uuid.UUID = row[0]
        if members:
            cur.executemany(
                """
                INSERT INTO arcyou_chat_members (room_id, user_id, role)
                VALUES (%s, %s, %s::arcyou_chat_member_role)
                ON CONFLICT (room_id, user_id) DO UPDATE SET deleted_at = NULL
                """,
                [(room_id, user, role) for user, role in members],
            )
        return room_id


def add_member(
    conn: psycopg.Connection[Any], room_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> None:
    """Make ``user_id`` a member of the room with ``role`` (again, if it had left)."""
    conn.execute(
        """
        INSERT INTO arcyou_chat_members (room_id, user_id, role)
        VALUES (%s, %s, %s::arcyou_chat_member_role)
        ON CONFLICT (room_id, user_id) DO UPDATE SET deleted_at = NULL, role = EXCLUDED.role
        """,
        (room_id, user_id, role),
    )


def ping(conn: psycopg.Connection[Any]) -> None:
    """One round trip: the server answers."""
    conn.execute("SELECT 1")
