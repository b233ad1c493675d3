"""The PostgreSQL adapter: migrations (idempotent, race-safe, tamper-evident), the send
transaction's guarantees, and cancellation without leaked connections."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
import trio
from psycopg import sql

from arcyou_trio.config import Settings
from arcyou_trio.errors import MigrationError
from arcyou_trio.store import Refusal, Store, apply_migrations
from arcyou_trio.store.migrate import available
from tests.conftest import _with_db, db, make_room
from tests.helpers import send_one, wait_for


@pytest.fixture
def empty_database(pg_admin_url: str) -> str:
    name = f"arcyou_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_db(pg_admin_url, name)  # type: ignore[misc]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_migrations_apply_once(empty_database: str) -> None:
    first = apply_migrations(empty_database)
    assert [m.version for m in first] == [m.version for m in available()]
    assert apply_migrations(empty_database) == []
    with db(empty_database) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert {"arcyou_chat_rooms", "arcyou_chat_messages", "arcyou_chat_members", "outbox"} <= tables


def test_racing_migrations_apply_each_version_once(empty_database: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            results.append([m.version for m in apply_migrations(empty_database)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    applied = sorted(v for r in results for v in r)
    assert applied == [m.version for m in available()]
    with db(empty_database) as conn:
        row = conn.execute("SELECT count(*) FROM arcyou_schema_migrations").fetchone()
    assert row == (len(available()),)


def test_changed_applied_migration_is_refused(empty_database: str) -> None:
    apply_migrations(empty_database)
    with db(empty_database) as conn:
        conn.execute("UPDATE arcyou_schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(empty_database)


def test_schema_defaults_and_enums(database_url: str) -> None:
    user = uuid.uuid4()
    room = make_room(database_url, user)
    with db(database_url) as conn:
        conn.execute(
            "INSERT INTO arcyou_chat_messages (room_id, user_id, content, seq)"
            " VALUES (%s, %s, '{}', 1)",
            (room, user),
        )
        row = conn.execute(
            "SELECT type::text, status::text, created_at IS NOT NULL FROM arcyou_chat_messages"
        ).fetchone()
        assert row == ("text", "sent", True)
        role = conn.execute("SELECT role::text FROM arcyou_chat_members").fetchone()
        assert role == ("participant",)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute(
                "INSERT INTO arcyou_chat_messages (room_id, user_id, content, type, seq)"
                " VALUES (%s, %s, '{}', 'video', 2)",
                (room, user),
            )
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO arcyou_chat_messages (room_id, user_id, content, seq)"
                " VALUES (%s, %s, '{}', 1)",
                (uuid.uuid4(), user),
            )
        # seq has no default (only the send path draws it) and is unique within a room.
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(
                "INSERT INTO arcyou_chat_messages (room_id, user_id, content)"
                " VALUES (%s, %s, '{}')",
                (room, user),
            )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO arcyou_chat_messages (room_id, user_id, content, seq)"
                " VALUES (%s, %s, '{}', 1)",
                (room, user),
            )
        last_seq = conn.execute("SELECT last_seq FROM arcyou_chat_rooms").fetchone()
        assert last_seq == (0,)


async def test_send_writes_message_outbox_and_room_in_one_transaction(store: Store) -> None:
    user = uuid.uuid4()
    url = store_url(store)
    room = make_room(url, user)
    message = await send_one(
        store, room_id=room, user_id=user, type="text", content={"text": "hi"}, temp_id="t"
    )
    assert not isinstance(message, Refusal) and not message.duplicate
    with db(url) as conn:
        outbox = conn.execute("SELECT status::text, payload FROM outbox").fetchall()
        last = conn.execute(
            "SELECT last_message_id, last_seq FROM arcyou_chat_rooms WHERE id = %s", (room,)
        ).fetchone()
    assert len(outbox) == 1 and outbox[0][0] == "pending"
    assert outbox[0][1]["message"]["id"] == message.message.id
    assert outbox[0][1]["message"]["temp_id"] == "t"
    assert outbox[0][1]["message"]["seq"] == message.message.seq == 1
    # The live event's message object and the backfill's are the same.
    assert outbox[0][1]["message"] == message.message.wire()
    assert last == (message.message.id, 1)


async def test_refused_send_writes_nothing(store: Store) -> None:
    url = store_url(store)
    room = make_room(url, uuid.uuid4())
    result = await send_one(
        store, room_id=room, user_id=uuid.uuid4(), type="text", content={"text": "no"}
    )
    assert result is Refusal.NOT_MEMBER
    with db(url) as conn:
        assert conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


async def test_ids_increase_in_commit_order_within_a_room(store: Store) -> None:
    users = [uuid.uuid4() for _ in range(4)]
    url = store_url(store)
    room = make_room(url, *users)

    async def sender(user: uuid.UUID) -> None:
        for i in range(25):
            await send_one(store, room_id=room, user_id=user, type="text", content={"text": str(i)})

    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(sender, user)
    with db(url) as conn:
        # xmin orders commits only loosely; the outbox id is drawn after the message id in the
        # same locked transaction, so both sequences must agree if ids follow commit order.
        rows = conn.execute(
            "SELECT (payload->'message'->>'id')::bigint FROM outbox ORDER BY id"
        ).fetchall()
        last = conn.execute("SELECT last_message_id FROM arcyou_chat_rooms").fetchone()
    ids = [r[0] for r in rows]
    assert ids == sorted(ids) and len(ids) == 100
    assert last == (ids[-1],)


async def test_cancelled_query_is_cancelled_on_the_server_and_frees_its_connection(
    store: Store,
) -> None:
    url = store_url(store)
    stats = store.pool_stats()
    size = stats["pool_max"]
    with trio.move_on_after(0.3) as scope:
        await store._run(lambda conn: conn.execute("SELECT pg_sleep(30)"))
    assert scope.cancelled_caught

    def sleeping() -> int:
        with db(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE query LIKE 'SELECT pg_sleep(30)%%' AND state = 'active'"
            ).fetchone()
            assert row is not None
            return int(row[0])

    async def server_side_cancelled() -> bool:
        return await trio.to_thread.run_sync(sleeping) == 0

    await wait_for(server_side_cancelled, what="pg_sleep to be cancelled on the server")
    # Every connection goes back to the pool: the pool can still serve `size` at once.
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(size):
                nursery.start_soon(store.ping)


def store_url(store: Store) -> str:
    return str(store._pool.conninfo)


async def test_unreachable_database_fails_fast(settings: Settings) -> None:
    import attrs

    from arcyou_trio.errors import StoreUnavailable

    gone = attrs.evolve(
        settings, database_url="postgresql://postgres@127.0.0.1:1/none", db_timeout_ms=500
    )
    with trio.fail_after(10):
        async with Store.open(gone) as store:
            with pytest.raises(StoreUnavailable):
                await store.ping()


async def test_group_commit_keeps_room_order_and_refuses_non_members(store: Store) -> None:
    from arcyou_trio.store import NewMessage

    url = store_url(store)
    users = [uuid.uuid4() for _ in range(3)]
    rooms = [make_room(url, *users[:2]) for _ in range(8)]
    outsider = uuid.uuid4()

    async def batch_sender(k: int) -> None:
        for j in range(20):
            batch = [
                NewMessage(rooms[(k + j + i) % 8], users[i % 2], "text", {"text": f"{k}.{j}.{i}"})
                for i in range(12)
            ]
            batch.append(NewMessage(rooms[k % 8], outsider, "text", {"text": "no"}))
            results = await store.send_messages(batch)
            assert results[-1] is Refusal.NOT_MEMBER
            assert not any(isinstance(r, Refusal) for r in results[:-1])
            # Within one batch a room's ids follow request order.
            by_room: dict[uuid.UUID, list[int]] = {}
            for sent in results[:-1]:
                assert not isinstance(sent, Refusal) and not sent.duplicate
                by_room.setdefault(sent.message.room_id, []).append(sent.message.id)
            assert all(ids == sorted(ids) for ids in by_room.values())

    # Concurrent batches over overlapping rooms: no deadlock (rooms are locked in id order).
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for k in range(6):
                nursery.start_soon(batch_sender, k)
    with db(url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM arcyou_chat_messages WHERE user_id = %s", (outsider,)
        ).fetchone() == (0,)
        for room in rooms:
            outbox = [
                r[0]
                for r in conn.execute(
                    "SELECT (payload->'message'->>'id')::bigint FROM outbox"
                    " WHERE room_id = %s ORDER BY id",
                    (room,),
                ).fetchall()
            ]
            # Outbox order (what workers publish) is message-id order within each room, and
            # the room's last_message_id is its newest message.
            assert outbox == sorted(outbox) and outbox
            last = conn.execute(
                "SELECT last_message_id FROM arcyou_chat_rooms WHERE id = %s", (room,)
            ).fetchone()
            assert last == (outbox[-1],)


async def test_a_call_past_db_timeout_raises_store_timeout_and_is_cancelled_on_the_server(
    settings: Settings,
) -> None:
    """The store bounds its own calls (DB_TIMEOUT_MS): callers need no timeout of their own."""
    import attrs

    from arcyou_trio.errors import StoreTimeout

    quick = attrs.evolve(settings, db_timeout_ms=300)
    async with Store.open(quick, wait=True) as store:
        assert store.timeout_s == 0.3
        start = trio.current_time()
        with trio.fail_after(5), pytest.raises(StoreTimeout):
            await store._run(lambda conn: conn.execute("SELECT pg_sleep(30)"))
        assert trio.current_time() - start < 2

        def sleeping() -> int:
            with db(settings.database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE query LIKE 'SELECT pg_sleep(30)%%' AND state = 'active'"
                ).fetchone()
                assert row is not None
                return int(row[0])

        async def server_side_cancelled() -> bool:
            return await trio.to_thread.run_sync(sleeping) == 0

        await wait_for(server_side_cancelled, what="pg_sleep to be cancelled on the server")
        # A timeout is not an outage: the next call runs at once.
        await store.ping()
