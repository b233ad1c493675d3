"""Group commit: many sends, possibly to many rooms, in one transaction.

The gateway coalesces the sends that arrive while a transaction is in flight into the next one
(:mod:`arcyou_trio.gateway.sendbatch`). Guarantees are those of a single send:

* every room of the batch is locked first, **in room-id order** (two batches that share rooms
  lock them in the same order, so they cannot deadlock);
* message ids are drawn after the locks are held, in request order, so ids still increase in
  commit order within a room;
* outbox rows are written in message-id order, so workers publish a room's events in order;
* a sender who is not a member of the room gets a refusal and nothing is written for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.store.queries import (
    _MESSAGE_COLUMNS,
    OUTBOX_CHANNEL,
    OUTBOX_PAYLOAD,
    Refusal,
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

_SEND_MANY = f"""
WITH req AS (
    SELECT * FROM unnest(
        %(ord)s::int[], %(room)s::uuid[], %(usr)s::uuid[], %(type)s::text[],
        %(content)s::jsonb[], %(temp)s::text[]
    ) AS t(ord, room_id, user_id, type, content, temp_id)
), ok AS (
    SELECT req.* FROM req
    WHERE EXISTS (SELECT 1 FROM arcyou_chat_members m
                  WHERE m.room_id = req.room_id AND m.user_id = req.user_id
                    AND m.deleted_at IS NULL)
), numbered AS MATERIALIZED (
    -- Ids drawn in request order (the rooms are already locked by this transaction).
    SELECT o.*, nextval(pg_get_serial_sequence('arcyou_chat_messages', 'id')) AS id
    FROM (SELECT * FROM ok ORDER BY ord) o
), msg AS (
    INSERT INTO arcyou_chat_messages (id, room_id, user_id, type, content, temp_id, created_at)
    SELECT id, room_id, user_id, type::arcyou_chat_message_type, content, temp_id,
           clock_timestamp()
    FROM numbered ORDER BY id
    RETURNING {_MESSAGE_COLUMNS}
), ob AS (
    INSERT INTO outbox (type, room_id, payload)
    SELECT 'message.created', msg.room_id, {OUTBOX_PAYLOAD}
    FROM msg ORDER BY msg.id
), upd AS (
    UPDATE arcyou_chat_rooms r SET last_message_id = m.last_id, updated_at = now()
    FROM (SELECT room_id, max(id) AS last_id FROM msg GROUP BY room_id) m
    WHERE r.id = m.room_id
), wake AS (
    SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM (SELECT 1 FROM msg LIMIT 1) one
)
SELECT numbered.ord, msg.*
FROM msg JOIN numbered ON numbered.id = msg.id, (SELECT count(*) FROM wake) woken
"""


def send_messages(
    conn: psycopg.Connection[Any], items: Sequence[NewMessage]
) -> list[ChatMessage | Refusal]:
    """Store ``items`` in one transaction; the result lines up with ``items``."""
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
    results: list[ChatMessage | Refusal] = [Refusal.NOT_MEMBER] * len(items)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_LOCK_ROOMS, (rooms,))
        cur.execute(_SEND_MANY, params)
        for row in cur.fetchall():
            results[row["ord"]] = _message(row)
    return results
