"""Writing a system message into a room's stream, inside the caller's transaction.

A membership or room change and its system message (:mod:`arcyou_trio.protocol.system`) commit
together: the message takes the room's next seq and id under the room's row lock (which the
caller holds, like the send transaction), its outbox row carries the same payload as a chat
message's (:data:`~arcyou_trio.store.send.OUTBOX_PAYLOAD`), and the workers are woken at commit.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.store.outbox import OUTBOX_CHANNEL
from arcyou_trio.store.rows import MESSAGE_COLUMNS, message_from_row
from arcyou_trio.store.send import OUTBOX_PAYLOAD

# The room row is already locked by the caller's transaction (lock_room), so the seq and id
# drawn here follow every message committed before in this room.
_APPEND = f"""
WITH numbered AS MATERIALIZED (
    SELECT r.id AS room_id, r.last_seq + 1 AS seq,
           nextval(pg_get_serial_sequence('arcyou_chat_messages', 'id')) AS id
    FROM arcyou_chat_rooms r WHERE r.id = %(room)s
), msg AS (
    INSERT INTO arcyou_chat_messages (id, room_id, user_id, type, content, seq, created_at)
    SELECT id, room_id, %(by)s, 'system', %(content)s, seq, clock_timestamp() FROM numbered
    RETURNING {MESSAGE_COLUMNS}
), ob AS (
    INSERT INTO outbox (type, room_id, payload)
    SELECT 'message.created', msg.room_id, {OUTBOX_PAYLOAD} FROM msg
), upd AS (
    UPDATE arcyou_chat_rooms r SET last_message_id = msg.id, last_seq = msg.seq, updated_at = now()
    FROM msg WHERE r.id = msg.room_id
), seen AS (
    -- The one who made the change has seen its message: it is not unread for them.
    UPDATE arcyou_chat_members mb SET last_read_message_id = msg.id
    FROM msg WHERE mb.room_id = msg.room_id AND mb.user_id = msg.user_id AND mb.deleted_at IS NULL
)
SELECT msg.*, pg_notify('{OUTBOX_CHANNEL}', '') IS NULL AS woken FROM msg
"""


def append_system_message(
    conn: psycopg.Connection[Any], room_id: uuid.UUID, by: uuid.UUID, content: dict[str, Any]
) -> ChatMessage:
    """Store ``content`` as the room's next message, sent by ``by``; the caller's transaction
    must hold the room's row lock. ``by`` has read it (if still a member)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_APPEND, {"room": room_id, "by": by, "content": Jsonb(content)})
        row = cur.fetchone()
    assert row is not None, "append_system_message: the room does not exist"
    return message_from_row(row)
