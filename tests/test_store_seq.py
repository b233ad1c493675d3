"""Per-room sequence numbers, idempotent sends, gap-filling reads and migration 0003, against
real PostgreSQL."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql

from arcyou_trio.config import Settings
from arcyou_trio.store import (
    Backfill,
    NewMessage,
    Refusal,
    Sent,
    Store,
    apply_migrations,
    migrate,
    send,
)
from arcyou_trio.store.outbox import OUTBOX_CHANNEL
from tests.conftest import _with_db, db, make_room
from tests.helpers import send_one, wait_for


@pytest.fixture
async def big_store(settings: Settings) -> AsyncIterator[Store]:
    """A store whose pool can run a dozen statements at once."""
    async with Store.open(settings, max_size=12, wait=True) as opened:
        yield opened


def url_of(store: Store) -> str:
    return str(store._pool.conninfo)


def sent(result: Sent | Refusal) -> Sent:
    assert isinstance(result, Sent), result
    return result


def text(n: object) -> dict[str, Any]:
    return {"text": str(n)}


def assert_rooms_consistent(url: str, rooms: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Every room: seqs 1..N without gaps, in id order, outbox in the same order, and the room's
    last_seq / last_message_id its newest message. Returns N per room."""
    counts = {}
    with db(url) as conn:
        for room in rooms:
            rows = conn.execute(
                "SELECT id, seq FROM arcyou_chat_messages WHERE room_id = %s ORDER BY id",
                (room,),
            ).fetchall()
            seqs = [seq for _, seq in rows]
            assert seqs == list(range(1, len(rows) + 1))
            outbox = conn.execute(
                "SELECT (payload->'message'->>'seq')::bigint, (payload->'message'->>'id')::bigint"
                " FROM outbox WHERE room_id = %s ORDER BY id",
                (room,),
            ).fetchall()
            assert outbox == [(seq, id_) for id_, seq in rows]
            last = conn.execute(
                "SELECT last_seq, last_message_id FROM arcyou_chat_rooms WHERE id = %s", (room,)
            ).fetchone()
            assert last == (len(rows), rows[-1][0] if rows else None)
            counts[room] = len(rows)
    return counts


# -- per-room seq ----------------------------------------------------------------------------


async def test_seq_is_contiguous_per_room_under_concurrent_sends_of_one(big_store: Store) -> None:
    url = url_of(big_store)
    users = [uuid.uuid4() for _ in range(3)]
    rooms = [make_room(url, *users) for _ in range(3)]
    seqs: dict[uuid.UUID, list[int]] = {room: [] for room in rooms}

    async def sender(room: uuid.UUID, user: uuid.UUID, k: int) -> None:
        for i in range(15):
            # Some with a temp_id, some without: both draw seqs the same way.
            result = sent(
                await send_one(
                    big_store,
                    room_id=room,
                    user_id=user,
                    type="text",
                    content=text(i),
                    temp_id=f"{k}-{i}" if i % 2 else None,
                )
            )
            assert not result.duplicate and result.message.room_id == room
            seqs[room].append(result.message.seq)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for room in rooms:
                for k, user in enumerate(users):
                    nursery.start_soon(sender, room, user, k)
    for room in rooms:
        assert sorted(seqs[room]) == list(range(1, 46))
    assert assert_rooms_consistent(url, rooms) == {room: 45 for room in rooms}


def test_seq_is_contiguous_per_room_under_concurrent_group_commits_from_threads(
    database_url: str,
) -> None:
    users = [uuid.uuid4() for _ in range(2)]
    rooms = [make_room(database_url, *users) for _ in range(5)]
    outsider = uuid.uuid4()
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def run(k: int) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                barrier.wait()
                for j in range(15):
                    batch = [
                        NewMessage(rooms[(k + j + i) % 5], users[i % 2], "text", text(i))
                        for i in range(9)
                    ]
                    batch.append(NewMessage(rooms[k % 5], outsider, "text", text("no")))
                    if k % 2:
                        # Half the threads also send one at a time in between.
                        [result] = send.send_messages(
                            conn, [NewMessage(rooms[j % 5], users[0], "text", text("single"))]
                        )
                        assert isinstance(result, Sent)
                    results = send.send_messages(conn, batch)
                    assert results[-1] is Refusal.NOT_MEMBER
                    by_room: dict[uuid.UUID, list[int]] = {}
                    for result in results[:-1]:
                        assert isinstance(result, Sent) and not result.duplicate
                        by_room.setdefault(result.message.room_id, []).append(result.message.seq)
                    # Within one batch a room's seqs are consecutive, in request order.
                    for got in by_room.values():
                        assert got == list(range(got[0], got[0] + len(got)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    counts = assert_rooms_consistent(database_url, rooms)
    assert sum(counts.values()) == 6 * 15 * 9 + 3 * 15


# -- idempotent send ---------------------------------------------------------------------------


def notifications(conn: psycopg.Connection[Any]) -> int:
    return sum(1 for _ in conn.notifies(timeout=0.3))


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        yield conn


async def test_retried_send_returns_the_original_and_stores_nothing(
    store: Store, listener: psycopg.Connection[Any]
) -> None:
    url = url_of(store)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(url, alice, bob)
    other_room = make_room(url, alice)
    first = sent(
        await send_one(
            store, room_id=room, user_id=alice, type="text", content=text("first"), temp_id="t1"
        )
    )
    assert not first.duplicate and first.message.seq == 1
    assert notifications(listener) == 1

    again = sent(
        await send_one(
            store, room_id=room, user_id=alice, type="text", content=text("changed"), temp_id="t1"
        )
    )
    assert again.duplicate
    assert again.message == first.message  # id, seq, created_at, content: the original's
    assert again.id == first.message.id
    assert notifications(listener) == 0
    # Also when the retry goes through group commit, or carries a reply_to.
    [batched] = await store.send_messages([NewMessage(room, alice, "text", text("x"), "t1")])
    assert sent(batched).duplicate and sent(batched).message == first.message
    replied = sent(
        await send_one(
            store,
            room_id=room,
            user_id=alice,
            type="text",
            content=text("y"),
            temp_id="t1",
            reply_to=1,
        )
    )
    assert replied.duplicate and replied.message == first.message
    assert notifications(listener) == 0
    with db(url) as conn:
        assert conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
        assert conn.execute(
            "SELECT last_seq FROM arcyou_chat_rooms WHERE id = %s", (room,)
        ).fetchone() == (1,)

    # The key is (room, sender, temp_id): another sender, another room or another temp_id is a
    # new message.
    for user, where, temp in ((bob, room, "t1"), (alice, other_room, "t1"), (alice, room, "t2")):
        result = sent(
            await send_one(
                store, room_id=where, user_id=user, type="text", content=text("new"), temp_id=temp
            )
        )
        assert not result.duplicate and result.message.id != first.message.id
    assert_rooms_consistent(url, [room, other_room])


async def test_send_without_temp_id_is_never_deduplicated(store: Store) -> None:
    url = url_of(store)
    alice = uuid.uuid4()
    room = make_room(url, alice)
    one = sent(await send_one(store, room_id=room, user_id=alice, type="text", content=text(1)))
    two = sent(await send_one(store, room_id=room, user_id=alice, type="text", content=text(1)))
    batch = await store.send_messages([NewMessage(room, alice, "text", text(1))] * 3)
    ids = {one.message.id, two.message.id, *(sent(r).message.id for r in batch)}
    assert len(ids) == 5
    assert not any(r.duplicate for r in (one, two, *map(sent, batch)))
    assert assert_rooms_consistent(url, [room]) == {room: 5}


async def test_duplicates_inside_one_batch_get_the_first_ones_message(store: Store) -> None:
    url = url_of(store)
    alice, bob, outsider = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    room, other = make_room(url, alice, bob), make_room(url, alice)
    stored = sent(
        await send_one(
            store, room_id=room, user_id=alice, type="text", content=text("old"), temp_id="old"
        )
    )
    batch = [
        NewMessage(room, alice, "text", text("a1"), "a"),  # 0 new
        NewMessage(room, alice, "text", text("a2"), "a"),  # 1 duplicate of 0
        NewMessage(room, bob, "text", text("b"), "a"),  # 2 new: another sender
        NewMessage(other, alice, "text", text("o"), "a"),  # 3 new: another room
        NewMessage(room, alice, "text", text("n"), None),  # 4 new
        NewMessage(room, alice, "text", text("n"), None),  # 5 new
        NewMessage(room, alice, "text", text("old2"), "old"),  # 6 duplicate of the stored one
        NewMessage(room, outsider, "text", text("z"), "a"),  # 7 not a member
        NewMessage(room, alice, "text", text("a3"), "a"),  # 8 duplicate of 0
        NewMessage(room, alice, "text", text("old3"), "old"),  # 9 duplicate of the stored one
    ]
    results = await store.send_messages(batch)
    assert results[7] is Refusal.NOT_MEMBER
    got = {i: sent(r) for i, r in enumerate(results) if i != 7}
    assert [i for i, r in got.items() if r.duplicate] == [1, 6, 8, 9]
    assert got[1].message == got[0].message == got[8].message
    assert got[0].message.content == text("a1")
    assert got[6].message == stored.message == got[9].message
    new = [got[i].message for i in (0, 2, 4, 5)]
    assert [m.seq for m in new] == [2, 3, 4, 5]
    assert got[3].message.seq == 1
    with db(url) as conn:
        assert conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone() == (6,)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (6,)
    assert assert_rooms_consistent(url, [room, other]) == {room: 5, other: 1}


async def test_a_non_member_retrying_is_refused(store: Store) -> None:
    url = url_of(store)
    alice, mallory = uuid.uuid4(), uuid.uuid4()
    room = make_room(url, alice)
    sent(
        await send_one(
            store, room_id=room, user_id=alice, type="text", content=text("mine"), temp_id="k"
        )
    )
    # Someone else's key is not theirs, whatever the temp_id.
    assert (
        await send_one(
            store, room_id=room, user_id=mallory, type="text", content=text("x"), temp_id="k"
        )
        is Refusal.NOT_MEMBER
    )
    # A member who left gets a refusal on retry, not the message they sent while a member.
    with db(url) as conn:
        conn.execute(
            "UPDATE arcyou_chat_members SET deleted_at = now() WHERE user_id = %s", (alice,)
        )
    for user in (alice, mallory):
        assert (
            await send_one(
                store, room_id=room, user_id=user, type="text", content=text("x"), temp_id="k"
            )
            is Refusal.NOT_MEMBER
        )
        assert await store.send_messages([NewMessage(room, user, "text", text("x"), "k")]) == [
            Refusal.NOT_MEMBER
        ]
    with db(url) as conn:
        assert conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone() == (1,)


async def test_reply_to_checks_come_after_the_duplicate_check(store: Store) -> None:
    url = url_of(store)
    alice = uuid.uuid4()
    room = make_room(url, alice)
    parent = sent(await send_one(store, room_id=room, user_id=alice, type="text", content={}))
    reply = sent(
        await send_one(
            store,
            room_id=room,
            user_id=alice,
            type="text",
            content=text("re"),
            temp_id="r",
            reply_to=parent.message.id,
        )
    )
    with db(url) as conn:
        conn.execute(
            "UPDATE arcyou_chat_messages SET deleted_at = now() WHERE id = %s", (parent.message.id,)
        )
    retry = sent(
        await send_one(
            store,
            room_id=room,
            user_id=alice,
            type="text",
            content=text("re"),
            temp_id="r",
            reply_to=parent.message.id,
        )
    )
    assert retry.duplicate and retry.message == reply.message
    assert retry.message.reply_to_message_id == parent.message.id
    for temp in (None, "fresh"):
        assert (
            await send_one(
                store,
                room_id=room,
                user_id=alice,
                type="text",
                content={},
                temp_id=temp,
                reply_to=parent.message.id,
            )
            is Refusal.REPLY_NOT_FOUND
        )
    assert assert_rooms_consistent(url, [room]) == {room: 2}


async def test_reply_to_a_message_of_the_room_is_stored_and_published(store: Store) -> None:
    url = url_of(store)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(url, alice, bob)
    parent = sent(await send_one(store, room_id=room, user_id=alice, content=text("q")))
    reply = sent(
        await send_one(
            store, room_id=room, user_id=bob, content=text("a"), reply_to=parent.message.id
        )
    )
    assert not reply.duplicate
    assert (reply.message.reply_to_message_id, reply.message.seq) == (parent.message.id, 2)
    with db(url) as conn:
        row = conn.execute(
            "SELECT reply_to_message_id FROM arcyou_chat_messages WHERE id = %s",
            (reply.message.id,),
        ).fetchone()
        payload = conn.execute(
            "SELECT payload FROM outbox WHERE (payload->'message'->>'id')::bigint = %s",
            (reply.message.id,),
        ).fetchone()
    assert row == (parent.message.id,)
    assert payload is not None
    assert payload[0]["message"]["reply_to_message_id"] == parent.message.id
    page = await store.messages_after(room, 1, 10)
    assert page.messages == [reply.message]
    assert_rooms_consistent(url, [room])


async def test_reply_to_another_rooms_or_a_deleted_or_no_message_is_refused(
    store: Store, listener: psycopg.Connection[Any]
) -> None:
    url = url_of(store)
    alice = uuid.uuid4()
    room, other = make_room(url, alice), make_room(url, alice)
    mine = sent(await send_one(store, room_id=room, user_id=alice, content=text("mine")))
    elsewhere = sent(await send_one(store, room_id=other, user_id=alice, content=text("else")))
    gone = sent(await send_one(store, room_id=room, user_id=alice, content=text("gone")))
    delete(url, room, gone.message.seq)
    assert notifications(listener) == 3
    missing = gone.message.id + 1000
    for target in (elsewhere.message.id, gone.message.id, missing):
        for temp in (None, f"t{target}"):
            result = await send_one(
                store, room_id=room, user_id=alice, content={}, temp_id=temp, reply_to=target
            )
            assert result is Refusal.REPLY_NOT_FOUND, (target, temp)
    assert notifications(listener) == 0  # nothing stored, nobody woken
    # Membership comes first: a non-member gets NOT_MEMBER whatever the reply target.
    for target in (mine.message.id, missing):
        assert (
            await send_one(store, room_id=room, user_id=uuid.uuid4(), content={}, reply_to=target)
            is Refusal.NOT_MEMBER
        )
    # A refused temp_id is not used up: the same send with a good target is stored.
    fixed = sent(
        await send_one(
            store,
            room_id=room,
            user_id=alice,
            content={},
            temp_id=f"t{missing}",
            reply_to=mine.message.id,
        )
    )
    assert not fixed.duplicate and fixed.message.seq == 3
    assert assert_rooms_consistent(url, [room, other]) == {room: 3, other: 1}


async def test_replies_mixed_in_one_batch_keep_seqs_contiguous(store: Store) -> None:
    url = url_of(store)
    alice, bob, outsider = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    room, other = make_room(url, alice, bob), make_room(url, alice)
    parent = sent(await send_one(store, room_id=room, user_id=alice, content=text("p")))
    foreign = sent(await send_one(store, room_id=other, user_id=alice, content=text("f")))
    old = sent(await send_one(store, room_id=room, user_id=bob, content=text("old"), temp_id="old"))
    p, f = parent.message.id, foreign.message.id
    batch = [
        NewMessage(room, alice, "text", text(0), None, p),  # 0 new, a reply
        NewMessage(room, alice, "text", text(1), None, f),  # 1 other room's target: refused
        NewMessage(other, alice, "text", text(2), None, f),  # 2 new in `other`, a reply
        NewMessage(room, bob, "text", text(3), "k", f),  # 3 refused, key k not used up
        NewMessage(room, bob, "text", text(4), "k", p),  # 4 new: stores key k
        NewMessage(room, bob, "text", text(5), "k", f),  # 5 duplicate of 4 (dup check first)
        NewMessage(room, alice, "text", text(6), None, None),  # 6 new
        NewMessage(room, outsider, "text", text(7), None, f),  # 7 not a member
        NewMessage(room, bob, "text", text(8), "old", f),  # 8 duplicate of the stored one
        NewMessage(room, alice, "text", text(9), "z", f),  # 9 refused
        NewMessage(room, alice, "text", text(10), "z", f),  # 10 refused
        NewMessage(room, alice, "text", text(11), None, p + 10_000),  # 11 refused: no message
    ]
    results = await store.send_messages(batch)
    refused = {i: r for i, r in enumerate(results) if isinstance(r, Refusal)}
    assert refused == {
        1: Refusal.REPLY_NOT_FOUND,
        3: Refusal.REPLY_NOT_FOUND,
        7: Refusal.NOT_MEMBER,
        9: Refusal.REPLY_NOT_FOUND,
        10: Refusal.REPLY_NOT_FOUND,
        11: Refusal.REPLY_NOT_FOUND,
    }
    got = {i: sent(r) for i, r in enumerate(results) if i not in refused}
    assert [i for i, r in got.items() if r.duplicate] == [5, 8]
    assert got[5].message == got[4].message and got[4].message.content == text(4)
    assert got[8].message == old.message
    # The room had seqs 1 (parent) and 2 (old): its new messages follow on, without a gap.
    assert [got[i].message.seq for i in (0, 4, 6)] == [3, 4, 5]
    assert got[2].message.seq == 2
    assert [got[i].message.reply_to_message_id for i in (0, 2, 4, 6)] == [p, f, p, None]
    with db(url) as conn:
        assert conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone() == (7,)
    assert assert_rooms_consistent(url, [room, other]) == {room: 5, other: 2}


@pytest.mark.parametrize("hold_room_lock", [True, False], ids=["racing", "free"])
async def test_concurrent_identical_sends_store_one_message(
    big_store: Store, listener: psycopg.Connection[Any], hold_room_lock: bool
) -> None:
    """8 identical sends at once, half of them repeated inside their own batch. With the room
    lock held while they start, every batch waits for the lock before the original commits:
    its lookup must still see the original (its statement starts after the lock is held)."""
    url = url_of(big_store)
    alice = uuid.uuid4()
    room = make_room(url, alice)
    results: dict[int, Sent | Refusal] = {}

    async def send(i: int) -> None:
        one = NewMessage(room, alice, "text", text(i), "same")
        if i % 2:
            [results[i]] = await big_store.send_messages([one])
        else:
            [results[i], repeat] = await big_store.send_messages([one, one])
            assert sent(repeat).duplicate and sent(repeat).message == sent(results[i]).message

    def waiting() -> int:
        with db(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            assert row is not None
            return int(row[0])

    async def all_waiting() -> bool:
        return await trio.to_thread.run_sync(waiting) == 8

    with psycopg.connect(url) as blocker:
        if hold_room_lock:
            blocker.execute("SELECT 1 FROM arcyou_chat_rooms WHERE id = %s FOR UPDATE", (room,))
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(send, i)
                if hold_room_lock:
                    await wait_for(all_waiting, what="8 sends waiting for the room lock")
                    await trio.to_thread.run_sync(blocker.commit)
    got = [sent(results[i]) for i in range(8)]
    assert all(r.message == got[0].message for r in got)
    assert sum(not r.duplicate for r in got) == 1
    assert notifications(listener) == 1
    with db(url) as conn:
        assert conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
    assert assert_rooms_consistent(url, [room]) == {room: 1}
    # The next send continues the sequence without a gap.
    after = sent(
        await send_one(
            big_store,
            room_id=room,
            user_id=alice,
            type="text",
            content=text("next"),
            temp_id="next",
        )
    )
    assert after.message.seq == 2


# -- reads by seq ------------------------------------------------------------------------------


async def send_n(store: Store, room: uuid.UUID, user: uuid.UUID, n: int) -> list[Sent]:
    return [
        sent(await send_one(store, room_id=room, user_id=user, type="text", content=text(i)))
        for i in range(n)
    ]


def delete(url: str, room: uuid.UUID, *seqs: int) -> None:
    with db(url) as conn:
        conn.execute(
            "UPDATE arcyou_chat_messages SET deleted_at = now()"
            " WHERE room_id = %s AND seq = ANY(%s)",
            (room, list(seqs)),
        )


async def test_messages_after_pages_by_seq_and_covers_deleted_messages(store: Store) -> None:
    url = url_of(store)
    alice = uuid.uuid4()
    room, empty = make_room(url, alice), make_room(url, alice)
    messages = await send_n(store, room, alice, 10)
    delete(url, room, 3, 4, 10)

    page = await store.messages_after(room, 0, 4)
    assert [m.seq for m in page.messages] == [1, 2, 5, 6]
    assert (page.upto_seq, page.last_seq) == (6, 10)
    assert page.messages[0] == messages[0].message
    assert page.messages[0].wire()["seq"] == 1
    # Not full: the page covers the room's end, deleted seq 10 included.
    page = await store.messages_after(room, 6, 4)
    assert [m.seq for m in page.messages] == [7, 8, 9]
    assert (page.upto_seq, page.last_seq) == (10, 10)
    page = await store.messages_after(room, 9, 4)
    assert (page.messages, page.upto_seq, page.last_seq) == ([], 10, 10)
    page = await store.messages_after(room, 10, 4)
    assert (page.messages, page.upto_seq, page.last_seq) == ([], 10, 10)
    # Only deleted messages in between: an empty page that still moves upto_seq.
    page = await store.messages_after(room, 2, 1)
    assert [m.seq for m in page.messages] == [5]
    assert page.upto_seq == 5
    delete(url, room, 5, 6, 7, 8, 9)
    page = await store.messages_after(room, 2, 3)
    assert (page.messages, page.upto_seq, page.last_seq) == ([], 10, 10)
    # A full page stops at its last message.
    page = await store.messages_after(room, 0, 2)
    assert [m.seq for m in page.messages] == [1, 2]
    assert page.upto_seq == 2

    page = await store.messages_after(empty, 0, 5)
    assert (page.messages, page.upto_seq, page.last_seq) == ([], 0, 0)
    page = await store.messages_after(uuid.uuid4(), 0, 5)
    assert (page.messages, page.upto_seq, page.last_seq) == ([], 0, 0)


async def test_room_last_seqs(store: Store) -> None:
    url = url_of(store)
    alice = uuid.uuid4()
    a, b, c = (make_room(url, alice) for _ in range(3))
    await send_n(store, a, alice, 3)
    await send_n(store, b, alice, 1)
    missing = uuid.uuid4()
    assert await store.room_last_seqs([a, b, c, missing]) == {a: 3, b: 1, c: 0}
    assert await store.room_last_seqs([]) == {}


async def test_join_room_starts_after_the_read_mark_or_since_message_id(store: Store) -> None:
    url = url_of(store)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room, other = make_room(url, alice, bob), make_room(url, alice)
    ids = []
    for i in range(6):
        # Interleaved with another room, so this room's ids have holes.
        ids.append(
            sent(
                await send_one(store, room_id=room, user_id=alice, type="text", content=text(i))
            ).message.id
        )
        await send_one(store, room_id=other, user_id=alice, type="text", content=text(i))
    assert ids[1] - ids[0] == 2

    backfill = await store.join_room(room, bob, 4)
    assert isinstance(backfill, Backfill)
    assert (backfill.read_upto, backfill.start_seq) == (0, 0)
    assert [m.seq for m in backfill.messages] == [1, 2, 3, 4]
    assert (backfill.upto_seq, backfill.last_seq) == (4, 6)
    assert backfill.messages[0].wire()["seq"] == 1

    # The read mark.
    assert await store.ack(room, bob, ids[2]) == ids[2]
    backfill = await store.join_room(room, bob, 10)
    assert isinstance(backfill, Backfill)
    assert (backfill.read_upto, backfill.start_seq) == (ids[2], 3)
    assert [m.seq for m in backfill.messages] == [4, 5, 6]
    assert (backfill.upto_seq, backfill.last_seq) == (6, 6)

    # since_message_id wins over the read mark; an id between two of the room's messages (or a
    # deleted message's id) starts after the newest message at or below it.
    backfill = await store.join_room(room, bob, 10, since_message_id=ids[4])
    assert isinstance(backfill, Backfill) and backfill.start_seq == 5
    assert backfill.read_upto == ids[4]
    assert [m.id for m in backfill.messages] == [ids[5]]
    backfill = await store.join_room(room, bob, 10, since_message_id=ids[0] + 1)
    assert isinstance(backfill, Backfill) and backfill.start_seq == 1
    delete(url, room, 2)
    backfill = await store.join_room(room, bob, 10, since_message_id=ids[1])
    assert isinstance(backfill, Backfill) and backfill.start_seq == 2
    backfill = await store.join_room(room, bob, 10, since_message_id=0)
    assert isinstance(backfill, Backfill) and backfill.start_seq == 0
    assert [m.seq for m in backfill.messages] == [1, 3, 4, 5, 6]
    backfill = await store.join_room(room, bob, 10, since_message_id=ids[5] + 100)
    assert isinstance(backfill, Backfill)
    assert (backfill.start_seq, backfill.messages, backfill.upto_seq) == (6, [], 6)

    assert await store.join_room(room, uuid.uuid4(), 10) is Refusal.NOT_MEMBER


# -- migration 0003 on existing data -----------------------------------------------------------


@pytest.fixture
def empty_database(pg_admin_url: str) -> Iterator[str]:
    name = f"arcyou_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_db(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_migration_0003_numbers_existing_messages_and_keeps_duplicates(
    empty_database: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = empty_database
    everything = migrate.available()
    with monkeypatch.context() as patch:
        patch.setattr(migrate, "available", lambda: [m for m in everything if m.version < 3])
        assert [m.version for m in apply_migrations(url)] == [1, 2]

    alice, bob = uuid.uuid4(), uuid.uuid4()
    room, other, quiet = (make_room(url, alice, bob, name=n) for n in ("r", "o", "q"))
    # (room, user, temp_id, deleted), inserted in this order: ids interleave between rooms.
    rows = [
        (room, alice, "x", False),  # keeps "x"
        (other, alice, "x", False),  # another room: keeps "x"
        (room, alice, "x", False),  # retry stored twice by an old version: loses its temp_id
        (room, bob, "x", False),  # another sender: keeps "x"
        (room, alice, None, False),
        (other, alice, "y", True),  # deleted, still numbered
        (room, alice, "x", False),  # third copy: loses its temp_id
        (other, alice, "y", False),  # repeats a deleted message's key: loses its temp_id
        (room, alice, "z", False),
    ]
    with db(url) as conn:
        ids = []
        for i, (r, u, t, deleted) in enumerate(rows):
            row = conn.execute(
                "INSERT INTO arcyou_chat_messages (room_id, user_id, content, temp_id, deleted_at)"
                " VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END) RETURNING id",
                (r, u, psycopg.types.json.Jsonb(text(i)), t, deleted),
            ).fetchone()
            assert row is not None
            ids.append(row[0])
        for r in (room, other):
            conn.execute(
                "UPDATE arcyou_chat_rooms SET last_message_id ="
                " (SELECT max(id) FROM arcyou_chat_messages WHERE room_id = %s) WHERE id = %s",
                (r, r),
            )
        # One event still waiting for a worker, one published before the upgrade, and a
        # hand-made one (dead) the migration must not trip over.
        for status, message_id in (("pending", ids[8]), ("published", ids[0]), ("dead", "x")):
            conn.execute(
                "INSERT INTO outbox (type, room_id, payload, status)"
                " VALUES ('message.created', %s, %s, %s::outbox_status)",
                (room, psycopg.types.json.Jsonb({"message": {"id": message_id}}), status),
            )

    with caplog.at_level(logging.WARNING, logger="arcyou_trio.store.migrate"):
        assert [m.version for m in apply_migrations(url)] == [3, 4]
    assert any(
        "3 later message(s) repeated an earlier (room_id, user_id, temp_id)" in r.getMessage()
        for r in caplog.records
    ), caplog.text

    with db(url) as conn:
        got = conn.execute(
            "SELECT id, room_id, seq, temp_id FROM arcyou_chat_messages ORDER BY id"
        ).fetchall()
        assert [g[0] for g in got] == ids  # nothing lost
        assert [g[3] for g in got] == ["x", "x", None, "x", None, "y", None, None, "z"]
        assert [g[2] for g in got if g[1] == room] == [1, 2, 3, 4, 5, 6]
        assert [g[2] for g in got if g[1] == other] == [1, 2, 3]
        last = dict(conn.execute("SELECT id, last_seq FROM arcyou_chat_rooms").fetchall())
        assert last == {room: 6, other: 3, quiet: 0}
        payloads = dict(conn.execute("SELECT status::text, payload FROM outbox").fetchall())
        assert payloads["pending"]["message"] == {"id": ids[8], "seq": 6}
        assert payloads["published"]["message"] == {"id": ids[0]}
        assert payloads["dead"]["message"] == {"id": "x"}

        # The send path continues each room's sequence, and a retry of a surviving key gets
        # the original.
        [new, retry] = send.send_messages(
            conn,
            [NewMessage(room, alice, "text", {}, "w"), NewMessage(room, alice, "text", {}, "x")],
        )
        assert isinstance(new, Sent) and new.message.seq == 7
        assert isinstance(retry, Sent) and retry.duplicate and retry.message.id == ids[0]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO arcyou_chat_messages (room_id, user_id, content, temp_id, seq)"
                " VALUES (%s, %s, '{}', 'z', 99)",
                (room, alice),
            )
    assert apply_migrations(url) == []


def test_migration_0003_on_clean_data_raises_no_notice(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="arcyou_trio.store.migrate"):
        apply_migrations(empty_database)
    assert caplog.records == []
