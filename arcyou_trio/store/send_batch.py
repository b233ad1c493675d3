"""Group commit: many sends, possibly to many rooms, in one transaction.

The gateway coalesces the sends that arrive while a transaction is in flight into the next one
(:mod:`arcyou_trio.gateway.sendbatch`). Guarantees are those of a single send:

* every room of the batch is locked first, **in room-id order** (two batches that share rooms
  lock them in the same order, so they cannot deadlock);
* message ids and each room's seqs are drawn after the locks are held, in request order, so
  both still increase in commit order within a room, and seqs have no gaps;
* outbox rows are written in message-id order, so workers publish a room's events in order;
* a sender who is not a member of the room gets a refusal and nothing is written for it;
* a (room, sender, temp_id) is stored once: a repeat, within the batch or of an earlier
  message, gets the original back marked as a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from arcyou_trio.store.queries import (
    _MESSAGE_COLUMNS,
    OUTBOX_CHANNEL,
    OUTBOX_PAYLOAD,
    Refusal,
    Sent,
    _message,
)


@attrs.frozen
class NewMessage:
    room_id: uuid.UUID
    user_id: uuid.UUID
    type: str
    content: dict[str, Any]
    temp_id: str | None = None


_LOCK_ROOMS = "SELECT id FROM arcyou_chat_rooms WHERE id = ANY(%s) ORDER BY id FOR UPDATE"

# Runs after _LOCK_ROOMS, as a statement of its own: its snapshot is taken with every room of
# the batch locked, so every message ever sent to them is visible to it (all sends hold the room
# lock) and a plain lookup finds the original of a retried temp_id. The unique index on
# (room_id, user_id, temp_id) backs this up: a violation fails the batch instead of storing a
# duplicate (no ON CONFLICT here: skipping a row would leave a gap in the room's seqs).
_SEND_MANY = f"""
WITH req AS (
    SELECT * FROM unnest(
        %(ord)s::int[], %(room)s::uuid[], %(usr)s::uuid[], %(type)s::text[],
        %(content)s::jsonb[], %(temp)s::text[]
    ) AS t(ord, room_id, user_id, type, content, temp_id)
), ok AS MATERIALIZED (
    -- Members only, each with the request that stores its (room, user, temp_id) in this batch
    -- (the first one) and the message stored under that key before, if any.
    SELECT req.*,
           CASE WHEN req.temp_id IS NULL THEN req.ord
                ELSE min(req.ord) OVER (PARTITION BY req.room_id, req.user_id, req.temp_id)
           END AS first_ord,
           (SELECT d.id FROM arcyou_chat_messages d
            WHERE d.room_id = req.room_id AND d.user_id = req.user_id
              AND d.temp_id = req.temp_id) AS old_id
    FROM req
    WHERE EXISTS (SELECT 1 FROM arcyou_chat_members m
                  WHERE m.room_id = req.room_id AND m.user_id = req.user_id
                    AND m.deleted_at IS NULL)
), sequenced AS (
    -- Each room's next seqs, in request order (the rooms are locked by this transaction).
    SELECT n.*, r.last_seq + row_number() OVER (PARTITION BY n.room_id ORDER BY n.ord) AS seq
    FROM ok n JOIN arcyou_chat_rooms r ON r.id = n.room_id
    WHERE n.ord = n.first_ord AND n.old_id IS NULL
), numbered AS MATERIALIZED (
    -- Ids drawn in request order, so they follow seq order within each room.
    SELECT o.*, nextval(pg_get_serial_sequence('arcyou_chat_messages', 'id')) AS id
    FROM (SELECT * FROM sequenced ORDER BY ord) o
), msg AS (
    INSERT INTO arcyou_chat_messages
        (id, room_id, user_id, type, content, temp_id, seq, created_at)
    SELECT id, room_id, user_id, type::arcyou_chat_message_type, content, temp_id, seq,
           clock_timestamp()
    FROM numbered ORDER BY id
    RETURNING {_MESSAGE_COLUMNS}
), ob AS (
    INSERT INTO outbox (type, room_id, payload)
    SELECT 'message.created', msg.room_id, {OUTBOX_PAYLOAD}
    FROM msg ORDER BY msg.id
), upd AS (
    UPDATE arcyou_chat_rooms r
    SET last_message_id = m.last_id, last_seq = m.last_seq, updated_at = now()
    FROM (SELECT room_id, max(id) AS last_id, max(seq) AS last_seq FROM msg GROUP BY room_id) m
    WHERE r.id = m.room_id
), wake AS (
    SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM (SELECT 1 FROM msg LIMIT 1) one
), stored AS (
    SELECT * FROM msg
    UNION ALL
    SELECT {_MESSAGE_COLUMNS} FROM arcyou_chat_messages
    WHERE id IN (SELECT old_id FROM ok WHERE old_id IS NOT NULL)
)
SELECT ok.ord, (ok.old_id IS NOT NULL OR ok.ord <> ok.first_ord) AS duplicate, stored.*
FROM ok
LEFT JOIN numbered fst ON fst.ord = ok.first_ord
JOIN stored ON stored.id = COALESCE(ok.old_id, fst.id),
(SELECT count(*) FROM wake) woken
"""


def send_messages(
    conn: psycopg.Connection[Any], items: Sequence[NewMessage]
) -> list[Sent | Refusal]:
    """Store ``items`` in one transaction; the result lines up with ``items``.

    An item whose (room, sender, temp_id) is already stored, or repeats an earlier item of the
    batch, stores nothing and gets that original, as a duplicate.
    """
    if not items:
        return []
    rooms = sorted({item.room_id for item in items})
    params = {
        "ord": list(range(len(items))),
        "room": [item.room_id for item in items],
        "usr": [item.user_id for item in items],
        "type": [item.type for item in items],
        "content": [Jsonb(item.content) for item in items],
        "temp": [item.temp_id for item in items],
    }
    results: list[Sent | Refusal] = [Refusal.NOT_MEMBER] * len(items)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_LOCK_ROOMS, (rooms,))
        cur.execute(_SEND_MANY, params)
        for row in cur.fetchall():
            results[row["ord"]] = Sent(_message(row), duplicate=bool(row["duplicate"]))
    return results
