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

from arcyou_trio.errors import StoreError
from arcyou_trio.protocol.messages import ChatMessage

# The wire's timestamp format (JavaScript's toISOString), computed in SQL so that the outbox
# payload and backfill rows are byte-identical for the same message.
_ISO = """to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""

_MESSAGE_COLUMNS = f"""
    id, room_id, user_id, type::text AS type, content, reply_to_message_id, temp_id, seq,
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
class Sent:
    """A send the database accepted: the stored message, and whether it was stored earlier.

    ``duplicate`` means a message with the same (room, sender, temp_id) already existed (or came
    earlier in the same group commit): nothing was written, and ``message`` is that original.
    """

    message: ChatMessage
    duplicate: bool = False

    @property
    def id(self) -> int:
        """Shorthand for ``message.id`` (the id the send reply carries)."""
        return self.message.id


@attrs.frozen
class Page:
    """Messages of one room after a seq, oldest first, as of one snapshot.

    ``upto_seq`` is the highest seq the page covers: the last message's when the page is full,
    else everything the room had (deleted messages skipped, but covered); ``after_seq`` when
    there was nothing after it. ``last_seq`` is the room's newest seq in the same snapshot.
    """

    messages: list[ChatMessage]
    upto_seq: int
    last_seq: int


@attrs.frozen
class Backfill:
    """A successful join's view of the room: the member's read mark and what follows it.

    ``start_seq`` is the seq delivery starts after (that of the newest message at or below the
    join's starting id, 0 if none); ``messages`` is the first page after it, and ``upto_seq`` /
    ``last_seq`` are as in :class:`Page`.
    """

    read_upto: int
    messages: list[ChatMessage]
    start_seq: int
    upto_seq: int
    last_seq: int


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
        seq=row["seq"],
        temp_id=row["temp_id"],
        reply_to_message_id=row["reply_to_message_id"],
    )


def join_room(
    conn: psycopg.Connection[Any],
    room_id: uuid.UUID,
    user_id: uuid.UUID,
    limit: int,
    since_message_id: int | None = None,
) -> Backfill | None:
    """Membership check plus backfill from one snapshot; None when not a member.

    Delivery starts after ``since_message_id`` if given, else after the member's read mark:
    ``start_seq`` is the seq of the newest message with an id at or below it.
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # REPEATABLE READ so the read mark, start seq and backfill come from the same snapshot.
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute(
            """
            SELECT b.read_upto, COALESCE(
                (SELECT m.seq FROM arcyou_chat_messages m
                 WHERE m.room_id = %(room_id)s AND m.id <= b.read_upto
                 ORDER BY m.id DESC LIMIT 1), 0) AS start_seq
            FROM (SELECT COALESCE(%(since)s::bigint, last_read_message_id, 0) AS read_upto
                  FROM arcyou_chat_members
                  WHERE room_id = %(room_id)s AND user_id = %(user_id)s
                    AND deleted_at IS NULL) b
            """,
            {"room_id": room_id, "user_id": user_id, "since": since_message_id},
        )
        member = cur.fetchone()
        if member is None:
            return None
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
    SELECT {_MESSAGE_COLUMNS} FROM arcyou_chat_messages
    WHERE room_id = %(room_id)s AND seq > %(after)s AND deleted_at IS NULL
    ORDER BY seq LIMIT %(limit)s
) p ON true
ORDER BY p.seq
"""


def _page(cur: psycopg.Cursor[Any], room_id: uuid.UUID, after_seq: int, limit: int) -> Page:
    cur.execute(_PAGE, {"room_id": room_id, "after": after_seq, "limit": limit})
    rows = cur.fetchall()
    last_seq = int(rows[0]["last_seq"])
    messages = [_message(row) for row in rows if row["id"] is not None]
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


# The outbox payload (the live event's `message` object) built from a row `msg` that has the
# message columns; shared by the single send and group commit so both publish the same shape.
OUTBOX_PAYLOAD = """jsonb_build_object(
        'roomId', msg.room_id,
        'message', jsonb_build_object(
            'id', msg.id, 'seq', msg.seq, 'user_id', msg.user_id, 'type', msg.type,
            'content', msg.content, 'created_at', msg.created_at)
          || CASE WHEN msg.temp_id IS NULL THEN '{}'::jsonb
                  ELSE jsonb_build_object('temp_id', msg.temp_id) END
          || CASE WHEN msg.reply_to_message_id IS NULL THEN '{}'::jsonb
                  ELSE jsonb_build_object('reply_to_message_id', msg.reply_to_message_id) END)"""

# One statement, one round trip: lock the room row (only if the sender is a member), draw the
# id and the room's next seq while holding that lock so both increase in commit order within a
# room, write the message and its outbox row, and move the room's last_message_id / last_seq.
#
# Idempotency (the partial unique index on (room_id, user_id, temp_id)): a retry whose original
# is visible to this statement's snapshot is answered from `dup`, without the room lock. An
# original committed while this statement waited for the room lock is not visible to it (READ
# COMMITTED takes the snapshot when the statement starts); the insert then hits the index, ON
# CONFLICT DO NOTHING writes nothing (no outbox row, no NOTIFY, last_seq unchanged, as they all
# hang off `msg`), the statement returns no row and send_message() reads the original with a
# fresh statement (_SEND_LOOKUP).
_SEND = f"""
WITH dup AS (
    SELECT {_MESSAGE_COLUMNS} FROM arcyou_chat_messages d
    WHERE %(temp_id)s::text IS NOT NULL
      AND d.room_id = %(room_id)s AND d.user_id = %(user_id)s AND d.temp_id = %(temp_id)s::text
      AND EXISTS (SELECT 1 FROM arcyou_chat_members m
                  WHERE m.room_id = d.room_id AND m.user_id = d.user_id AND m.deleted_at IS NULL)
), room AS (
    SELECT r.id, r.last_seq FROM arcyou_chat_rooms r
    WHERE r.id = %(room_id)s
      AND EXISTS (SELECT 1 FROM arcyou_chat_members m
                  WHERE m.room_id = r.id AND m.user_id = %(user_id)s AND m.deleted_at IS NULL)
      AND NOT EXISTS (SELECT 1 FROM dup)
    FOR UPDATE OF r
), msg AS (
    INSERT INTO arcyou_chat_messages
        (room_id, user_id, type, content, reply_to_message_id, temp_id, seq, created_at)
    -- clock_timestamp(), not now(): read after the room lock is held, so created_at follows
    -- id order within a room (now() is the transaction's start, before any lock wait).
    -- room.last_seq is the locked row's current version (a FOR UPDATE that waited returns the
    -- row as the transaction it waited for left it).
    SELECT room.id, %(user_id)s, %(type)s::arcyou_chat_message_type, %(content)s, %(reply_to)s,
           %(temp_id)s::text, room.last_seq + 1, clock_timestamp()
    FROM room
    WHERE %(reply_to)s::bigint IS NULL OR EXISTS (
        SELECT 1 FROM arcyou_chat_messages p
        WHERE p.id = %(reply_to)s::bigint AND p.room_id = room.id AND p.deleted_at IS NULL)
    ON CONFLICT (room_id, user_id, temp_id) WHERE temp_id IS NOT NULL DO NOTHING
    RETURNING {_MESSAGE_COLUMNS}
), ob AS (
    INSERT INTO outbox (type, room_id, payload)
    SELECT 'message.created', msg.room_id, {OUTBOX_PAYLOAD}
    FROM msg
), upd AS (
    UPDATE arcyou_chat_rooms r
    SET last_message_id = msg.id, last_seq = msg.seq, updated_at = now()
    FROM msg WHERE r.id = msg.room_id
), wake AS (
    -- Wakes the outbox workers (LISTEN outbox_pending) when this transaction commits.
    SELECT pg_notify('{OUTBOX_CHANNEL}', '') AS woken FROM msg
)
SELECT false AS duplicate, msg.* FROM msg, wake
UNION ALL
SELECT true AS duplicate, dup.* FROM dup
"""

# After a send stored nothing: is the sender a member, and the message stored under its temp_id
# (NULL columns if none). A statement of its own, so it sees whatever committed meanwhile.
_SEND_LOOKUP = f"""
SELECT mb.member, d.*
FROM (SELECT EXISTS (SELECT 1 FROM arcyou_chat_members
                     WHERE room_id = %(room_id)s AND user_id = %(user_id)s
                       AND deleted_at IS NULL) AS member) mb
LEFT JOIN LATERAL (
    SELECT {_MESSAGE_COLUMNS} FROM arcyou_chat_messages
    WHERE room_id = %(room_id)s AND user_id = %(user_id)s AND temp_id = %(temp_id)s::text
) d ON mb.member
"""

# A retry can only miss its original if the original vanished between the two statements (a
# hard delete); then the send is simply tried again.
_SEND_ATTEMPTS = 3


def send_message(
    conn: psycopg.Connection[Any],
    *,
    room_id: uuid.UUID,
    user_id: uuid.UUID,
    type: str,
    content: dict[str, Any],
    temp_id: str | None,
    reply_to: int | None,
) -> Sent | Refusal:
    """Store one message (its own transaction), or return the original of a retried temp_id.

    Membership comes first: a non-member gets NOT_MEMBER even for a temp_id it used before.
    """
    params = {
        "room_id": room_id,
        "user_id": user_id,
        "type": type,
        "content": Jsonb(content),
        "temp_id": temp_id,
        "reply_to": reply_to,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        for _ in range(_SEND_ATTEMPTS):
            cur.execute(_SEND, params)
            row = cur.fetchone()
            if row is not None:
                return Sent(_message(row), duplicate=bool(row["duplicate"]))
            if temp_id is None:
                if reply_to is not None and _is_member(cur, room_id, user_id):
                    return Refusal.REPLY_NOT_FOUND
                return Refusal.NOT_MEMBER
            cur.execute(_SEND_LOOKUP, params)
            found = cur.fetchone()
            assert found is not None
            if not found["member"]:
                return Refusal.NOT_MEMBER
            if found["id"] is not None:
                return Sent(_message(found), duplicate=True)
            if reply_to is not None:
                return Refusal.REPLY_NOT_FOUND
    raise StoreError("send stored nothing and found no original to return")


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
