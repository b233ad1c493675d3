"""Storing messages: every send, one or many, possibly to many rooms, in one transaction.

There is one send algorithm. The gateway coalesces the sends that arrive while a transaction is
in flight into the next one (:mod:`arcyou_trio.gateway.sendbatch`); under light load a batch is
one message. The guarantees:

* every room of the batch is locked first, **in room-id order** (two batches that share rooms
  lock them in the same order, so they cannot deadlock);
* message ids and each room's seqs are drawn after the locks are held, in request order, so
  both increase in commit order within a room, and seqs have no gaps;
* the message, its ``outbox`` row (written in message-id order, so workers publish a room's
  events in order) and the room's ``last_message_id`` / ``last_seq`` are written together, and
  the workers are woken (NOTIFY :data:`~arcyou_trio.store.outbox.OUTBOX_CHANNEL`) at commit;
* a sender who is not a member of the room gets ``NOT_MEMBER`` and nothing is written for it;
* a (room, sender, temp_id) is stored once: a repeat, within the batch or of an earlier
  message, stores nothing and gets the original back marked as a duplicate (membership is
  checked first, the reply target after);
* a send to a closed room gets ``ROOM_CLOSED`` and stores nothing;
* a ``reply_to`` that does not name a non-deleted message of the same room gets
  ``REPLY_NOT_FOUND`` and stores nothing (it is left out before seqs are drawn: no gap).

The SQL is public (:data:`LOCK_ROOMS`, :data:`SEND`, :func:`send_params`) because the benchmark
harness runs exactly this statement (under pgbench, and through other database bridges).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from arcyou_trio.store.outbox import OUTBOX_CHANNEL
from arcyou_trio.store.rows import MESSAGE_COLUMNS, Refusal, Sent, message_from_row


@attrs.frozen
class NewMessage:
    """One send as the store takes it."""

    room_id: uuid.UUID
    user_id: uuid.UUID
    type: str
    content: dict[str, Any]
    temp_id: str | None = None
    reply_to: int | None = None


#: First statement of the send transaction: lock every room of the batch, in room-id order.
LOCK_ROOMS = (
    "SELECT id FROM arcyou_chat_rooms WHERE id = ANY(%(rooms)s::uuid[]) ORDER BY id FOR UPDATE"
)

# The outbox payload (the live event's `message` object) built from a row `msg` that has the
# message columns. The same shape as ChatMessage.wire() (arcyou_trio.protocol.messages), which
# backfill sends: tests/test_store_wire.py proves the two equal, field by field.
OUTBOX_PAYLOAD = """jsonb_build_object(
        'roomId', msg.room_id,
        'message', jsonb_build_object(
            'id', msg.id, 'seq', msg.seq, 'user_id', msg.user_id, 'type', msg.type,
            'content', msg.content, 'created_at', msg.created_at)
          || CASE WHEN msg.temp_id IS NULL THEN '{}'::jsonb
                  ELSE jsonb_build_object('temp_id', msg.temp_id) END
          || CASE WHEN msg.reply_to_message_id IS NULL THEN '{}'::jsonb
                  ELSE jsonb_build_object('reply_to_message_id', msg.reply_to_message_id) END)"""

#: Second (and last) statement of the send transaction: store the batch, one row per stored,
#: duplicate, REPLY_NOT_FOUND or ROOM_CLOSED item (NULL message columns); non-members get no
#: row. A retry of a message stored before its room closed still gets the original back.
#:
#: It runs after LOCK_ROOMS, as a statement of its own: its snapshot is taken with every room of
#: the batch locked, so every message ever sent to them is visible to it (all sends hold the room
#: lock) and a plain lookup finds the original of a retried temp_id. The unique index on
#: (room_id, user_id, temp_id) backs this up: a violation fails the batch instead of storing a
#: duplicate (no ON CONFLICT here: skipping a row would leave a gap in the room's seqs).
SEND = f"""
WITH req AS (
    SELECT * FROM unnest(
        %(ord)s::int[], %(room)s::uuid[], %(usr)s::uuid[], %(type)s::text[],
        %(content)s::jsonb[], %(temp)s::text[], %(reply)s::bigint[]
    ) AS t(ord, room_id, user_id, type, content, temp_id, reply_to)
), ok AS MATERIALIZED (
    -- Members only, each with the request that stores its message in this batch (first_ord:
    -- itself without a temp_id, else the first request of its (room, user, temp_id) whose
    -- reply_to is valid, i.e. unset or naming a message `p` of the room not deleted; NULL if
    -- none) and the message stored under that key before, if any.
    SELECT req.*,
           CASE WHEN req.temp_id IS NULL
                THEN CASE WHEN req.reply_to IS NULL OR p.id IS NOT NULL THEN req.ord END
                ELSE min(req.ord) FILTER (WHERE req.reply_to IS NULL OR p.id IS NOT NULL)
                         OVER (PARTITION BY req.room_id, req.user_id, req.temp_id)
           END AS first_ord,
           (SELECT d.id FROM arcyou_chat_messages d
            WHERE d.room_id = req.room_id AND d.user_id = req.user_id
              AND d.temp_id = req.temp_id) AS old_id
           , EXISTS (SELECT 1 FROM arcyou_chat_rooms c
                     WHERE c.id = req.room_id AND c.closed_at IS NOT NULL) AS closed
    FROM req
    LEFT JOIN arcyou_chat_messages p
      ON p.id = req.reply_to AND p.room_id = req.room_id AND p.deleted_at IS NULL
    WHERE EXISTS (SELECT 1 FROM arcyou_chat_members mb
                  WHERE mb.room_id = req.room_id AND mb.user_id = req.user_id
                    AND mb.deleted_at IS NULL)
), sequenced AS (
    -- Each room's next seqs, in request order (the rooms are locked by this transaction), for
    -- the requests that store a message.
    SELECT n.*, r.last_seq + row_number() OVER (PARTITION BY n.room_id ORDER BY n.ord) AS seq
    FROM ok n JOIN arcyou_chat_rooms r ON r.id = n.room_id
    WHERE n.ord = n.first_ord AND n.old_id IS NULL AND NOT n.closed
), numbered AS MATERIALIZED (
    -- Ids drawn in request order, so they follow seq order within each room.
    SELECT o.*, nextval(pg_get_serial_sequence('arcyou_chat_messages', 'id')) AS id
    FROM (SELECT * FROM sequenced ORDER BY ord) o
), msg AS (
    INSERT INTO arcyou_chat_messages
        (id, room_id, user_id, type, content, reply_to_message_id, temp_id, seq, created_at)
    -- clock_timestamp(), not now(): read after the room locks are held, so created_at follows
    -- id order within a room (now() is the transaction's start).
    SELECT id, room_id, user_id, type::arcyou_chat_message_type, content, reply_to, temp_id,
           seq, clock_timestamp()
    FROM numbered ORDER BY id
    RETURNING {MESSAGE_COLUMNS}
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
    -- Wakes the outbox workers (LISTEN arcyou_outbox) when this transaction commits.
    SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM (SELECT 1 FROM msg LIMIT 1) one
), stored AS (
    SELECT * FROM msg
    UNION ALL
    SELECT {MESSAGE_COLUMNS} FROM arcyou_chat_messages
    WHERE id IN (SELECT old_id FROM ok WHERE old_id IS NOT NULL)
)
SELECT ok.ord, (ok.old_id IS NOT NULL OR ok.ord > ok.first_ord) AS duplicate, ok.closed
       AS room_closed, stored.*
FROM ok
LEFT JOIN numbered fst ON fst.ord = ok.first_ord AND ok.ord >= ok.first_ord
LEFT JOIN stored ON stored.id = COALESCE(ok.old_id, fst.id),
(SELECT count(*) FROM wake) woken
"""


def send_params(items: Sequence[NewMessage]) -> dict[str, Any]:
    """The parameters :func:`send_messages` binds to :data:`LOCK_ROOMS` and :data:`SEND`
    (one mapping for both: each statement takes the names it uses)."""
    return {
        "rooms": sorted({item.room_id for item in items}),
        "ord": list(range(len(items))),
        "room": [item.room_id for item in items],
        "usr": [item.user_id for item in items],
        "type": [item.type for item in items],
        "content": [Jsonb(item.content) for item in items],
        "temp": [item.temp_id for item in items],
        "reply": [item.reply_to for item in items],
    }


def send_messages(
    conn: psycopg.Connection[Any], items: Sequence[NewMessage]
) -> list[Sent | Refusal]:
    """Store ``items`` in one transaction; the result lines up with ``items``.

    An item whose (room, sender, temp_id) is already stored, or repeats an earlier item of the
    batch that stores a message, stores nothing and gets that original, as a duplicate.
    """
    if not items:
        return []
    params = send_params(items)
    results: list[Sent | Refusal] = [Refusal.NOT_MEMBER] * len(items)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(LOCK_ROOMS, params)
        cur.execute(SEND, params)
        for row in cur.fetchall():
            if row["id"] is None:
                results[row["ord"]] = (
                    Refusal.ROOM_CLOSED if row["room_closed"] else Refusal.REPLY_NOT_FOUND
                )
            else:
                results[row["ord"]] = Sent(message_from_row(row), duplicate=bool(row["duplicate"]))
    return results
