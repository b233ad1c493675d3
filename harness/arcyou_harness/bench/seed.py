"""Rooms and members for the benchmark, created with SQL; ids computable in SQL too.

Every id of a run starts with a random 16-hex-digit run prefix, so runs against a shared
database never meet old rooms (and their backfill). A room is ``<room prefix><n as 16 hex>``, a
user ``<user prefix><k as 16 hex>``: pgbench can compute the same ids from a number (see
:mod:`arcyou_harness.common.ceilings`).
"""

from __future__ import annotations

import secrets
import uuid

import attrs
import psycopg


@attrs.frozen
class Ids:
    room_prefix: str  # 16 hex digits
    user_prefix: str

    @classmethod
    def fresh(cls) -> Ids:
        return cls(secrets.token_hex(8), secrets.token_hex(8))

    def room(self, n: int) -> str:
        return str(uuid.UUID(self.room_prefix + f"{n:016x}"))

    def user(self, k: int) -> str:
        return str(uuid.UUID(self.user_prefix + f"{k:016x}"))

    def room_sql(self, expr: str) -> str:
        """SQL for the room id of number ``expr`` (an integer expression)."""
        return f"('{self.room_prefix}' || lpad(to_hex(({expr})::bigint), 16, '0'))::uuid"

    def user_sql(self, expr: str) -> str:
        return f"('{self.user_prefix}' || lpad(to_hex(({expr})::bigint), 16, '0'))::uuid"


def create_rooms(
    conninfo: str, ids: Ids, first_room: int, rooms: int, members: int, first_user: int
) -> None:
    """Rooms ``first_room .. first_room+rooms-1``; room ``first_room+i`` gets the users
    ``first_user + i*members + j`` for ``j < members``."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        with conn.transaction():
            conn.execute(
                f"""
                INSERT INTO arcyou_chat_rooms (id, name)
                SELECT {ids.room_sql("n")}, 'bench room ' || n
                FROM generate_series(%(a)s::bigint, %(b)s::bigint) n
                """,
                {"a": first_room, "b": first_room + rooms - 1},
            )
            room = ids.room_sql("%(r0)s::bigint + g / %(m)s::bigint")
            user = ids.user_sql("%(u0)s::bigint + g")
            conn.execute(
                f"""
                INSERT INTO arcyou_chat_members (room_id, user_id, role)
                SELECT {room}, {user}, 'participant'
                FROM generate_series(0, %(n)s::bigint - 1) g
                """,
                {"r0": first_room, "m": members, "u0": first_user, "n": rooms * members},
            )
        conn.execute("ANALYZE arcyou_chat_rooms, arcyou_chat_members")
