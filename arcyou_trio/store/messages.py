"""Reading a room's messages and moving read marks: join backfill, pages by seq, last seqs, ack.

Blocking functions over one psycopg connection, each run on a pool thread by
:mod:`arcyou_trio.store.db`. Single statements run in autocommit (one round trip, its own
transaction); the join's reads share one explicit REPEATABLE READ transaction. Storing messages
is :mod:`arcyou_trio.store.send`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from arcyou_trio.store.rows import MESSAGE_COLUMNS, Backfill, Page, Refusal, message_from_row


def join_room(
    conn: psycopg.Connection[Any],
    room_id: uuid.UUID,
    user_id: uuid.UUID,
    limit: int,
    since_message_id: int | None = None,
) -> Backfill | Refusal:
    """Membership check plus backfill from one snapshot; a refusal for a non-member or a closed
    room.

    Delivery starts after ``since_message_id`` if given, else after the member's read mark:
    ``start_seq`` is the seq of the newest message with an id at or below it.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # REPEATABLE READ so the read mark, start seq and backfill come from the same snapshot.
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute(
            """
            SELECT b.closed, b.read_upto, COALESCE(
                (SELECT m.seq FROM arcyou_chat_messages m
                 WHERE m.room_id = %(room_id)s AND m.id <= b.read_upto
                 ORDER BY m.id DESC LIMIT 1), 0) AS start_seq
            FROM (SELECT COALESCE(%(since)s::bigint, mb.last_read_message_id, 0) AS read_upto,
                         r.closed_at IS NOT NULL AS closed
                  FROM arcyou_chat_members mb JOIN arcyou_chat_rooms r ON r.id = mb.room_id
                  WHERE mb.room_id = %(room_id)s AND mb.user_id = %(user_id)s
                    AND mb.deleted_at IS NULL) b
            """,
            {"room_id": room_id, "user_id": user_id, "since": since_message_id},
        )
        member = cur.fetchone()
        if member is None:
            return Refusal.NOT_MEMBER
        if member["closed"]:
            return Refusal.ROOM_CLOSED
        start_seq = int(member["start_seq"])
        page = _page(cur, room_id, start_seq, limit)
        return Backfill(
            read_upto=int(member["read_upto"]),
            messages=page.messages,
            start_seq=start_seq,
            upto_seq=page.upto_seq,
            last_seq=page.last_seq,
        )


# One row per message of the page, or one row of NULL message columns when the page is empty;
# the room's last_seq and its highest stored seq ride along on every row.
_PAGE = f"""
SELECT s.last_seq, s.max_seq, p.*
FROM (SELECT COALESCE((SELECT last_seq FROM arcyou_chat_rooms WHERE id = %(room_id)s), 0)
               AS last_seq,
             (SELECT max(seq) FROM arcyou_chat_messages WHERE room_id = %(room_id)s)
               AS max_seq) s
LEFT JOIN LATERAL (
    SELECT {MESSAGE_COLUMNS} FROM arcyou_chat_messages
    WHERE room_id = %(room_id)s AND seq > %(after)s AND deleted_at IS NULL
    ORDER BY seq LIMIT %(limit)s
) p ON true
ORDER BY p.seq
"""


def _page(cur: psycopg.Cursor[Any], room_id: uuid.UUID, after_seq: int, limit: int) -> Page:
    cur.execute(_PAGE, {"room_id": room_id, "after": after_seq, "limit": limit})
    rows = cur.fetchall()
    last_seq = int(rows[0]["last_seq"])
    messages = [message_from_row(row) for row in rows if row["id"] is not None]
    if limit > 0 and len(messages) == limit:
        # Full: more may follow, so the page covers up to its last message only.
        upto_seq = messages[-1].seq
    elif limit > 0:
        # Everything after after_seq was read, deleted messages included.
        upto_seq = max(after_seq, int(rows[0]["max_seq"] or 0))
    else:
        upto_seq = after_seq
    return Page(messages, upto_seq, last_seq)


def messages_after(
    conn: psycopg.Connection[Any], room_id: uuid.UUID, after_seq: int, limit: int
) -> Page:
    """The room's messages with seq > ``after_seq``, oldest first, at most ``limit``.

    One statement, so one snapshot (autocommit). No membership check: callers ask for rooms
    the connection has joined.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        return _page(cur, room_id, after_seq, limit)


def room_last_seqs(
    conn: psycopg.Connection[Any], room_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Each room's newest seq (0 before its first message); rooms that do not exist are left
    out."""
    if not room_ids:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, last_seq FROM arcyou_chat_rooms WHERE id = ANY(%s::uuid[])",
            (list(room_ids),),
        )
        return {row[0]: int(row[1]) for row in cur.fetchall()}


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
              AND r.closed_at IS NULL
            RETURNING m.last_read_message_id
            """,
            {"room_id": room_id, "user_id": user_id, "id": last_read},
        )
        row = cur.fetchone()
        if row is not None:
            return int(row[0])
        return _why_not(cur, room_id, user_id)


def _why_not(cur: psycopg.Cursor[Any], room_id: uuid.UUID, user_id: uuid.UUID) -> Refusal:
    """Why an ack moved nothing: not a member, the room closed, or a mark ahead of it."""
    cur.execute(
        """
        SELECT r.closed_at IS NOT NULL FROM arcyou_chat_members mb
        JOIN arcyou_chat_rooms r ON r.id = mb.room_id
        WHERE mb.room_id = %s AND mb.user_id = %s AND mb.deleted_at IS NULL
        """,
        (room_id, user_id),
    )
    row = cur.fetchone()
    if row is None:
        return Refusal.NOT_MEMBER
    return Refusal.ROOM_CLOSED if row[0] else Refusal.AHEAD_OF_ROOM
