"""One wire shape for a message: the live event's (the outbox payload, built in SQL by the send)
equals the backfill's (``ChatMessage.wire()`` of the row), field by field, against real
PostgreSQL, whatever the temp_id, reply_to and content."""

from __future__ import annotations

import json
import uuid
from typing import Any

import hypothesis
import psycopg
import pytest
from hypothesis import strategies as st
from psycopg.rows import dict_row

from arcyou_trio.store import NewMessage, Refusal, Sent, send
from arcyou_trio.store.messages import messages_after
from arcyou_trio.store.rows import OutboxRow
from arcyou_trio.worker.loop import encode_event
from tests.conftest import make_room

# UTF-8 (no lone surrogates) without NUL, which PostgreSQL text and jsonb refuse.
_chars = st.characters(codec="utf-8", exclude_characters="\x00")
# JSON as jsonb stores it: finite numbers, integers within int64.
_text = st.text(alphabet=_chars)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_content = st.dictionaries(_text, _json, max_size=5)
_temp_id = st.none() | st.text(alphabet=_chars, min_size=1, max_size=40)
# Where a reply points: nowhere, a message of the room, a message of another room, a deleted
# message, or no message at all.
_reply = st.sampled_from(["none", "room", "other", "deleted", "missing"])
_items = st.lists(
    st.tuples(st.sampled_from(["text", "image", "file", "system"]), _content, _temp_id, _reply),
    min_size=1,
    max_size=6,
)


def _canonical(value: Any) -> bytes:
    """The codec's encoding with keys sorted (jsonb keeps keys in an order of its own); the
    stdlib, as the codec falls back to it for integers beyond 64 bits."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode()


@pytest.fixture
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(items=_items)
def test_outbox_payload_is_the_wire_shape_of_the_stored_message(
    database_url: str,
    conn: psycopg.Connection[Any],
    items: list[tuple[str, dict[str, Any], str | None, str]],
) -> None:
    alice = uuid.uuid4()
    room = make_room(database_url, alice)
    other = make_room(database_url, alice)
    [base, deleted] = send.send_messages(
        conn, [NewMessage(room, alice, "text", {"n": 1}), NewMessage(room, alice, "text", {})]
    )
    [foreign] = send.send_messages(conn, [NewMessage(other, alice, "text", {})])
    assert isinstance(base, Sent) and isinstance(deleted, Sent) and isinstance(foreign, Sent)
    conn.execute("UPDATE arcyou_chat_messages SET deleted_at = now() WHERE id = %s", (deleted.id,))
    targets = {
        "none": None,
        "room": base.id,
        "other": foreign.id,
        "deleted": deleted.id,
        "missing": foreign.id + 1000,
    }
    batch = [
        NewMessage(room, alice, type_, content, temp_id, targets[reply])
        for type_, content, temp_id, reply in items
    ]
    results = send.send_messages(conn, batch)
    for item, result in zip(batch, results, strict=True):
        if item.reply_to in (None, base.id):
            assert isinstance(result, Sent)
        elif item.temp_id is None:
            assert result is Refusal.REPLY_NOT_FOUND
    stored = {r.id: r.message for r in results if isinstance(r, Sent) and not r.duplicate}

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, room_id, type, payload, attempts FROM outbox"
            " WHERE (payload->'message'->>'id')::bigint = ANY(%s) ORDER BY id",
            (list(stored),),
        )
        rows = [OutboxRow(**row) for row in cur.fetchall()]
    assert len(rows) == len(stored)
    page = {m.id: m for m in messages_after(conn, room, base.message.seq, 100).messages}
    for row in rows:
        message = stored[row.payload["message"]["id"]]
        wire = message.wire()
        # Every field, the optional ones present exactly when set, the same values and types.
        assert row.payload == {"roomId": str(room), "message": wire}
        assert _canonical(row.payload["message"]) == _canonical(wire)
        assert ("temp_id" in wire) == (message.temp_id is not None)
        assert ("reply_to_message_id" in wire) == (message.reply_to_message_id is not None)
        # Read back as backfill reads it: the same message, so the same wire shape.
        assert page[message.id] == message
        # What the worker publishes carries what backfill sends (decoded by the stdlib, which
        # keeps integers beyond 64 bits exact).
        event = json.loads(encode_event(row, "2026-01-01T00:00:00.000Z"))
        assert _canonical(event["message"]) == _canonical(page[message.id].wire())
