"""History for the HTTP API: pages by seq, one message, read marks, search.

Blocking functions over one psycopg connection, run on a pool thread by
:mod:`arcyou_trio.store.db`. Reads of one request share one REPEATABLE READ snapshot (the
membership check and the page agree). Deleted messages are skipped, as in backfill.

Search runs in PostgreSQL: full text over the ``simple`` configuration (GIN index, ranked,
``ts_headline`` for the highlight) or, for text that has no word boundary to match at (Korean
and other CJK: a word inside a longer word), a substring match backed by a trigram index; both
only over the caller's rooms (migration 0004).
"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from arcyou_trio.errors import Conflict, NotFound, OutOfRange
from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.store.rows import MESSAGE_COLUMNS, SearchHit, message_from_row

_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
_MEMBER = """SELECT r.closed_at IS NOT NULL FROM arcyou_chat_members mb
JOIN arcyou_chat_rooms r ON r.id = mb.room_id
WHERE mb.room_id = %s AND mb.user_id = %s AND mb.deleted_at IS NULL"""


def _require_member(conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID) -> bool:
    """Whether the room is closed; NotFound if the caller is not a member."""
    row = conn.execute(_MEMBER, (room_id, user)).fetchone()
    if row is None:
        raise NotFound("room not found")
    return bool(row[0])


def page(
    conn: psycopg.Connection[Any],
    room_id: uuid.UUID,
    user: uuid.UUID,
    *,
    before_seq: int | None,
    after_seq: int | None,
    limit: int,
) -> tuple[list[ChatMessage], bool]:
    """Messages ascending by seq and whether more exist in the direction read.

    With ``after_seq``: the first ``limit`` after it (below ``before_seq`` if given too), more
    = later ones exist. Otherwise the last ``limit`` below ``before_seq`` (the newest page
    without either), more = earlier ones exist.
    """
    params = {
        "room": room_id,
        "after": after_seq if after_seq is not None else 0,
        "before": before_seq,
        "limit": limit + 1,
    }
    forward = after_seq is not None
    order = "ASC" if forward else "DESC"
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SNAPSHOT)
        _require_member(conn, room_id, user)
        cur.execute(
            f"""
            SELECT {MESSAGE_COLUMNS} FROM arcyou_chat_messages
            WHERE room_id = %(room)s AND deleted_at IS NULL AND seq > %(after)s
              AND (%(before)s::bigint IS NULL OR seq < %(before)s::bigint)
            ORDER BY seq {order} LIMIT %(limit)s
            """,
            params,
        )
        rows = cur.fetchall()
    more = len(rows) > limit
    items = [message_from_row(row) for row in rows[:limit]]
    if not forward:
        items.reverse()
    return items, more


def get_message(
    conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID, message_id: int
) -> ChatMessage:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SNAPSHOT)
        _require_member(conn, room_id, user)
        cur.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM arcyou_chat_messages"
            " WHERE id = %s AND room_id = %s AND deleted_at IS NULL",
            (message_id, room_id),
        )
        row = cur.fetchone()
    if row is None:
        raise NotFound("message not found")
    return message_from_row(row)


def mark_read(
    conn: psycopg.Connection[Any], room_id: uuid.UUID, user: uuid.UUID, message_id: int
) -> tuple[int, int]:
    """Move the caller's read mark to ``message_id`` (never backwards, like ``ack``); the mark
    now stored and the unread count after it."""
    with conn.transaction(), conn.cursor() as cur:
        if _require_member(conn, room_id, user):
            raise Conflict("the room is closed")
        cur.execute(
            """
            UPDATE arcyou_chat_members m
            SET last_read_message_id = GREATEST(COALESCE(m.last_read_message_id, 0), %(id)s)
            FROM arcyou_chat_rooms r
            WHERE m.room_id = %(room)s AND m.user_id = %(user)s AND m.deleted_at IS NULL
              AND r.id = m.room_id AND %(id)s <= COALESCE(r.last_message_id, 0)
            RETURNING m.last_read_message_id, r.last_seq - COALESCE(
                (SELECT rm.seq FROM arcyou_chat_messages rm
                 WHERE rm.room_id = r.id
                   AND rm.id <= GREATEST(COALESCE(m.last_read_message_id, 0), %(id)s)
                 ORDER BY rm.id DESC LIMIT 1), 0)
            """,
            {"room": room_id, "user": user, "id": message_id},
        )
        row = cur.fetchone()
    if row is None:
        raise OutOfRange("message_id", "is ahead of the room's last message")
    return int(row[0]), max(0, int(row[1]))


# Characters of scripts written without spaces between words: such a query is matched as a
# substring (trigram index) rather than as words.
_UNSPACED = re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u9fff\uac00-\ud7af]")
_HEADLINE = "StartSel=<mark>, StopSel=</mark>, MaxWords=30, MinWords=10, MaxFragments=2"
_ESCAPED = "replace(replace(replace(m.content->>'text', '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"

_WORDS = f"""
WITH q AS (SELECT websearch_to_tsquery('simple', %(q)s) AS q)
SELECT m.room_id AS hit_room, {MESSAGE_COLUMNS},
       ts_headline('simple', {_ESCAPED}, q.q, '{_HEADLINE}') AS highlight
FROM arcyou_chat_messages m, q
WHERE to_tsvector('simple'::regconfig, m.content->>'text') @@ q.q
  AND m.type = 'text' AND m.deleted_at IS NULL
  AND m.room_id IN (SELECT room_id FROM arcyou_chat_members
                    WHERE user_id = %(user)s AND deleted_at IS NULL
                      AND (%(room)s::uuid IS NULL OR room_id = %(room)s::uuid))
ORDER BY ts_rank_cd(to_tsvector('simple'::regconfig, m.content->>'text'), q.q) DESC, m.id DESC
OFFSET %(offset)s LIMIT %(limit)s
"""

_SUBSTRING = f"""
SELECT m.room_id AS hit_room, {MESSAGE_COLUMNS}, NULL AS highlight
FROM arcyou_chat_messages m
WHERE (m.content->>'text') ILIKE %(like)s
  AND m.type = 'text' AND m.deleted_at IS NULL
  AND m.room_id IN (SELECT room_id FROM arcyou_chat_members
                    WHERE user_id = %(user)s AND deleted_at IS NULL
                      AND (%(room)s::uuid IS NULL OR room_id = %(room)s::uuid))
ORDER BY word_similarity(%(q)s, m.content->>'text') DESC, m.id DESC
OFFSET %(offset)s LIMIT %(limit)s
"""


def substring_search(query: str) -> bool:
    """Whether ``query`` is matched as a substring (it has CJK characters) or as words."""
    return _UNSPACED.search(query) is not None


def _like(query: str) -> str:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _mark(text: str, query: str, context: int = 40) -> str:
    """The highlight of a substring hit: escaped text around the first match, in <mark>."""
    at = text.lower().find(query.lower())
    if at < 0:
        return html.escape(text[: 2 * context], quote=False)
    start = max(0, at - context)
    end = min(len(text), at + len(query) + context)
    return "".join(
        (
            "…" if start else "",
            html.escape(text[start:at], quote=False),
            "<mark>",
            html.escape(text[at : at + len(query)], quote=False),
            "</mark>",
            html.escape(text[at + len(query) : end], quote=False),
            "…" if end < len(text) else "",
        )
    )


def search(
    conn: psycopg.Connection[Any],
    user: uuid.UUID,
    query: str,
    *,
    room_id: uuid.UUID | None,
    offset: int,
    limit: int,
) -> tuple[list[SearchHit], bool]:
    """The caller's messages matching ``query``, best first; whether more follow."""
    query = " ".join(query.split())
    params = {
        "q": query,
        "like": _like(query),
        "user": user,
        "room": room_id,
        "offset": offset,
        "limit": limit + 1,
    }
    statement = _SUBSTRING if substring_search(query) else _WORDS
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statement, params)
        rows = cur.fetchall()
    hits = []
    for row in rows[:limit]:
        message = message_from_row(row)
        highlight = row["highlight"]
        if not highlight or "<mark>" not in highlight:
            highlight = _mark(str(message.content.get("text", "")), query)
        hits.append(SearchHit(room_id=row["hit_room"], message=message, highlight=highlight))
    return hits, len(rows) > limit
