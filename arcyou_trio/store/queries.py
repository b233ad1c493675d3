"""All SQL of the system, as blocking functions over one psycopg connection.

Each function is one short unit of work run on a pool thread by :mod:`arcyou_trio.store.db`.
Single statements run in autocommit (one round trip, its own transaction); anything that needs
more than one statement opens an explicit transaction.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from arcyou_trio.protocol.messages import ChatMessage

# The wire's timestamp format (JavaScript's toISOString), computed in SQL so that the outbox
# payload and backfill rows are byte-identical for the same message.
_ISO = """to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""

_MESSAGE_COLUMNS = f"""
    id, room_id, user_id, type::text AS type, content, reply_to_message_id, temp_id,
    {_ISO.format(col="created_at")} AS created_at
"""


# The NOTIFY channel the send transaction signals and the workers LISTEN on.
OUTBOX_CHANNEL = "arcyou_outbox"


class Refusal(enum.Enum):
    """Why a send or ack was refused by the database."""

    NOT_MEMBER = "not_member"
    REPLY_NOT_FOUND = "reply_not_found"
    AHEAD_OF_ROOM = "ahead_of_room"


@attrs.frozen
class Backfill:
    """A successful join's view of the room: the member's read mark and what follows it."""

    read_upto: int
    messages: list[ChatMessage]


@attrs.frozen
class OutboxRow:
    id: int
    room_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    attempts: int


def _message(row: dict[str, Any]) -> ChatMessage:
    return ChatMessage(
        id=row["id"],
        room_id=row["room_id"],
        user_id=row["user_id"],
        type=row["type"],
        content=row["content"],
        created_at=row["created_at"],
        temp_id=row["temp_id"],
        reply_to_message_id=row["reply_to_message_id"],
    )


def join_room(
    conn: psycopg.Connection[Any],
    room_id: uuid.UUID,
    user_id: uuid.UUID,
    limit: int,
    after_id: int | None = None,
) -> Backfill | None:
    """Membership check plus backfill from one snapshot; None when not a member."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # REPEATABLE READ so the read mark and the backfill come from the same snapshot.
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute(
            """
            SELECT last_read_message_id FROM arcyou_chat_members
            WHERE room_id = %s AND user_id = %s AND deleted_at IS NULL
            """,
            (room_id, user_id),
        )
        member = cur.fetchone()
        if member is None:
            return None
        start = after_id if after_id is not None else (member["last_read_message_id"] or 0)
        cur.execute(
            f"""
            SELECT {_MESSAGE_COLUMNS} FROM arcyou_chat_messages
            WHERE room_id = %s AND id > %s AND deleted_at IS NULL
            ORDER BY id LIMIT %s
            """,
            (room_id, start, limit),
        )
        return Backfill(start, [_message(row) for row in cur.fetchall()])


# The outbox payload (the live event's `message` object) built from a row `msg` that has the
# message columns; shared by the single send and group commit so both publish the same shape.
OUTBOX_PAYLOAD = """jsonb_build_object(
        'roomId', msg.room_id,
        'message', jsonb_build_object(
            'id', msg.id, 'user_id', msg.user_id, 'type', msg.type, 'content', msg.content,
            'created_at', msg.created_at)
          || CASE WHEN msg.temp_id IS NULL THEN '{}'::jsonb
                  ELSE jsonb_build_object('temp_id', msg.temp_id) END
          || CASE WHEN msg.reply_to_message_id IS NULL THEN '{}'::jsonb
                  ELSE jsonb_build_object('reply_to_message_id', msg.reply_to_message_id) END)"""

# One statement, one round trip: lock the room row (only if the sender is a member), draw the
# id while holding that lock so ids increase in commit order within a room, write the message and
# its outbox row, and move the room's last_message_id.
_SEND = f"""
WITH room AS (
    SELECT r.id FROM arcyou_chat_rooms r
    WHERE r.id = %(room_id)s
      AND EXISTS (SELECT 1 FROM arcyou_chat_members m
                  WHERE m.room_id = r.id AND m.user_id = %(user_id)s AND m.deleted_at IS NULL)
    FOR UPDATE OF r
), msg AS (
    INSERT INTO arcyou_chat_messages
        (room_id, user_id, type, content, reply_to_message_id, temp_id, created_at)
    -- clock_timestamp(), not now(): read after the room lock is held, so created_at follows
    -- id order within a room (now() is the transaction's start, before any lock wait).
    SELECT room.id, %(user_id)s, %(type)s::arcyou_chat_message_type, %(content)s, %(reply_to)s,
           %(temp_id)s, clock_timestamp()
    FROM room
    WHERE %(reply_to)s::bigint IS NULL OR EXISTS (
        SELECT 1 FROM arcyou_chat_messages p
        WHERE p.id = %(reply_to)s::bigint AND p.room_id = room.id AND p.deleted_at IS NULL)
    RETURNING {_MESSAGE_COLUMNS}
), ob AS (
    INSERT INTO outbox (type, room_id, payload)
    SELECT 'message.created', msg.room_id, {OUTBOX_PAYLOAD}
    FROM msg
), upd AS (
    UPDATE arcyou_chat_rooms r SET last_message_id = msg.id, updated_at = now()
    FROM msg WHERE r.id = msg.room_id
), wake AS (
    -- Wakes the outbox workers (LISTEN outbox_pending) when this transaction commits.
    SELECT pg_notify('{OUTBOX_CHANNEL}', '') AS woken FROM msg
)
SELECT msg.* FROM msg, wake
"""


def send_message(
    conn: psycopg.Connection[Any],
    *,
    room_id: uuid.UUID,
    user_id: uuid.UUID,
    type: str,
    content: dict[str, Any],
    temp_id: str | None,
    reply_to: int | None,
) -> ChatMessage | Refusal:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            _SEND,
            {
                "room_id": room_id,
                "user_id": user_id,
                "type": type,
                "content": Jsonb(content),
                "temp_id": temp_id,
                "reply_to": reply_to,
            },
        )
        row = cur.fetchone()
        if row is not None:
            return _message(row)
        if reply_to is not None and _is_member(cur, room_id, user_id):
            return Refusal.REPLY_NOT_FOUND
        return Refusal.NOT_MEMBER


def _is_member(cur: psycopg.Cursor[Any], room_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    cur.execute(
        """
        SELECT 1 FROM arcyou_chat_members
        WHERE room_id = %s AND user_id = %s AND deleted_at IS NULL
        """,
        (room_id, user_id),
    )
    return cur.fetchone() is not None


def ack(
    conn: psycopg.Connection[Any], room_id: uuid.UUID, user_id: uuid.UUID, last_read: int
) -> int | Refusal:
    """Move the read mark forward (never back); return the mark now stored."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE arcyou_chat_members m
            SET last_read_message_id = GREATEST(COALESCE(m.last_read_message_id, 0), %(id)s)
            FROM arcyou_chat_rooms r
            WHERE m.room_id = %(room_id)s AND m.user_id = %(user_id)s AND m.deleted_at IS NULL
              AND r.id = m.room_id AND %(id)s <= COALESCE(r.last_message_id, 0)
            RETURNING m.last_read_message_id
            """,
            {"room_id": room_id, "user_id": user_id, "id": last_read},
        )
        row = cur.fetchone()
        if row is not None:
            return int(row[0])
        return Refusal.AHEAD_OF_ROOM if _is_member(cur, room_id, user_id) else Refusal.NOT_MEMBER


# -- outbox (worker) ------------------------------------------------------------------------

_CLAIM = """
WITH due AS (
    SELECT id FROM outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), stale AS (
    SELECT id FROM outbox
    WHERE status = 'in_progress' AND locked_until < now()
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET status = 'in_progress', locked_by = %(worker)s,
    locked_until = now() + %(lease_ms)s * interval '1 millisecond'
WHERE o.id IN (SELECT id FROM due UNION ALL SELECT id FROM stale)
RETURNING o.id, o.room_id, o.type, o.payload, o.attempts
"""


def claim_outbox(
    conn: psycopg.Connection[Any], worker: str, limit: int, lease_ms: int
) -> list[OutboxRow]:
    """Lease up to ``limit`` due rows (and rows whose lease expired) to ``worker``, by id."""
    with conn.cursor() as cur:
        cur.execute(_CLAIM, {"limit": limit, "worker": worker, "lease_ms": lease_ms})
        rows = [OutboxRow(*row) for row in cur.fetchall()]
    rows.sort(key=lambda r: r.id)
    return rows


def mark_published(conn: psycopg.Connection[Any], ids: Sequence[int], worker: str) -> int:
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE outbox
            SET status = 'published', published_at = now(), locked_by = NULL,
                locked_until = NULL, error = NULL
            WHERE id = ANY(%s) AND locked_by = %s AND status = 'in_progress'
            """,
            (list(ids), worker),
        )
        return cur.rowcount


def mark_failed(
    conn: psycopg.Connection[Any],
    delays_ms: Sequence[tuple[int, int]],
    worker: str,
    error: str,
    max_attempts: int,
) -> int:
    """Count a failed attempt for each (id, delay) and schedule a retry, or mark the row dead.

    Returns how many rows became dead.
    """
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE outbox o
            SET attempts = o.attempts + 1,
                status = CASE WHEN o.attempts + 1 >= %(max)s THEN 'dead'::outbox_status
                              ELSE 'pending'::outbox_status END,
                next_attempt_at = now() + f.delay_ms * interval '1 millisecond',
                error = %(error)s, locked_by = NULL, locked_until = NULL
            FROM unnest(%(ids)s::bigint[], %(delays)s::integer[]) AS f(id, delay_ms)
            WHERE o.id = f.id AND o.locked_by = %(worker)s AND o.status = 'in_progress'
            RETURNING o.status::text
            """,
            {
                "ids": [i for i, _ in delays_ms],
                "delays": [d for _, d in delays_ms],
                "max": max_attempts,
                "error": error[:2000],
                "worker": worker,
            },
        )
        return sum(1 for (status,) in cur.fetchall() if status == "dead")


def release(conn: psycopg.Connection[Any], ids: Sequence[int], worker: str) -> int:
    """Hand leased rows back (worker shutdown): pending again, due now, attempts unchanged."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE outbox SET status = 'pending', locked_by = NULL, locked_until = NULL,
                              next_attempt_at = now()
            WHERE id = ANY(%s) AND locked_by = %s AND status = 'in_progress'
            """,
            (list(ids), worker),
        )
        return cur.rowcount


# -- rooms (admin, dev tools and tests) -----------------------------------------------------


def create_room(
    conn: psycopg.Connection[Any],
    name: str,
    members: Sequence[tuple[uuid.UUID, str]],
    description: str | None = None,
) -> uuid.UUID:
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
    conn.execute(
        """
        INSERT INTO arcyou_chat_members (room_id, user_id, role)
        VALUES (%s, %s, %s::arcyou_chat_member_role)
        ON CONFLICT (room_id, user_id) DO UPDATE SET deleted_at = NULL, role = EXCLUDED.role
        """,
        (room_id, user_id, role),
    )


def ping(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT 1")
