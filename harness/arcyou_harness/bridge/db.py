"""The PostgreSQL rows: our send transaction through the store, through psycopg's async pool under
trio-asyncio, on plain asyncio, and under pgbench (the ceiling); the scratch database."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool
import trio
import trio_asyncio
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from arcyou_harness.bridge.measure import (
    CONTENT,
    HOT_ROOM,
    ROOMS,
    Result,
    aio_closed_loop,
    room_numbers,
    room_uuid,
    run_child,
    trio_closed_loop,
    user_uuid,
)
from arcyou_harness.common.ceilings import run_pgbench, send_script
from arcyou_trio.config import Settings
from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.store import NewMessage, Sent, Store
from arcyou_trio.store.rows import message_from_row
from arcyou_trio.store.send import LOCK_ROOMS, SEND, send_params


def create_scratch_db(admin_url: str, name: str) -> str:
    """A fresh, empty database ``name`` on the server of ``admin_url``; its conninfo."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(admin_url, dbname=name)


def drop_scratch_db(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_rooms(conninfo: str) -> None:
    """Rooms 1..ROOMS and HOT_ROOM, room ``n`` with user ``n`` as its one member."""
    numbers = [*range(1, ROOMS + 1), HOT_ROOM]
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO arcyou_chat_rooms (id, name) VALUES (%s, %s)",
                [(room_uuid(n), f"bench room {n}") for n in numbers],
            )
            cur.executemany(
                "INSERT INTO arcyou_chat_members (room_id, user_id, role)"
                " VALUES (%s, %s, 'participant')",
                [(room_uuid(n), user_uuid(n)) for n in numbers],
            )
        # The SQL expressions the pgbench script uses must give the same ids.
        row = conn.execute(
            """
            SELECT count(*) FROM generate_series(1, %s) n
            JOIN arcyou_chat_members m ON m.room_id = lpad(to_hex(n), 32, '0')::uuid
             AND m.user_id = ('1' || lpad(to_hex(n), 31, '0'))::uuid
            """,
            (ROOMS,),
        ).fetchone()
        assert row is not None and row[0] == ROOMS, row


def reset_tables(conninfo: str) -> None:
    """No messages, no outbox rows, rooms as new; vacuumed and checkpointed (if allowed)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE arcyou_chat_messages, outbox")
        conn.execute(
            "UPDATE arcyou_chat_rooms SET last_message_id = NULL, last_seq = 0, updated_at = NULL"
        )
        conn.execute(
            "VACUUM (ANALYZE) arcyou_chat_rooms, arcyou_chat_members, arcyou_chat_messages, outbox"
        )
        try:
            conn.execute("CHECKPOINT")
        except psycopg.Error as exc:  # not superuser: carry on, runs are a little noisier
            print(f"  (no CHECKPOINT between runs: {exc})", file=sys.stderr)


def count_rows(conninfo: str) -> tuple[int, int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM arcyou_chat_messages), (SELECT count(*) FROM outbox)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def checked(conninfo: str, fn: Callable[[float], Result]) -> Callable[[float], Result]:
    """Check that a slice wrote one message and one outbox row per completed send."""

    def run(seconds: float) -> Result:
        messages0, outbox0 = count_rows(conninfo)
        result = fn(seconds)
        messages1, outbox1 = count_rows(conninfo)
        if not messages1 - messages0 == outbox1 - outbox0 == result.ops:
            result.note = "row count mismatch"
            print(
                f"  WARNING: {result.ops} sends, but {messages1 - messages0} messages and"
                f" {outbox1 - outbox0} outbox rows",
                file=sys.stderr,
            )
        return result

    return run


def one_send(n: int) -> NewMessage:
    """The message every row sends: from user ``n`` to room ``n``, no temp_id, no reply."""
    return NewMessage(room_uuid(n), user_uuid(n), "text", CONTENT)


async def db_store(
    conninfo: str, load: str, concurrency: int, seconds: float, warmup: float
) -> Result:
    """The store row: :meth:`Store.send_messages` with a batch of one, from trio tasks."""
    settings = Settings(database_url=conninfo)
    numbers = room_numbers(load)
    async with Store.open(settings, max_size=concurrency, wait=True) as store:

        async def op(rng: random.Random) -> None:
            n = rng.choice(numbers)
            [sent] = await store.send_messages([one_send(n)])
            if not isinstance(sent, Sent):
                raise RuntimeError(f"send refused: {sent}")

        return await trio_closed_loop(op, concurrency, seconds, warmup)


def async_pool(conninfo: str, concurrency: int) -> psycopg_pool.AsyncConnectionPool[Any]:
    """Sized and configured like the pool ``Store.open`` makes (call on an asyncio loop)."""
    return psycopg_pool.AsyncConnectionPool(
        conninfo,
        min_size=min(2, concurrency),
        max_size=concurrency,
        open=False,
        kwargs={"autocommit": True, "connect_timeout": 5},
        name="bench-async",
    )


async def aio_send(pool: psycopg_pool.AsyncConnectionPool[Any], n: int) -> ChatMessage:
    """The store's send for an ``AsyncConnection``: the same transaction, statements, parameters
    and row mapping (:mod:`arcyou_trio.store.send`)."""
    params = send_params([one_send(n)])
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(LOCK_ROOMS, params)
        await cur.execute(SEND, params)
        row = await cur.fetchone()
    if row is None or row["id"] is None:
        raise RuntimeError(f"send refused: {row}")
    return message_from_row(row)


async def aio_send_loop(
    conninfo: str, load: str, concurrency: int, seconds: float, warmup: float
) -> Result:
    """The whole closed loop as asyncio code: an open pool, ``concurrency`` asyncio tasks."""
    pool = async_pool(conninfo, concurrency)
    await pool.open(wait=True, timeout=10)
    numbers = room_numbers(load)
    try:
        return await aio_closed_loop(
            lambda rng: aio_send(pool, rng.choice(numbers)), concurrency, seconds, warmup
        )
    finally:
        await pool.close()


async def db_async_per_call(
    conninfo: str, load: str, concurrency: int, seconds: float, warmup: float
) -> Result:
    numbers = room_numbers(load)
    async with trio_asyncio.open_loop():

        async def open_pool() -> psycopg_pool.AsyncConnectionPool[Any]:
            pool = async_pool(conninfo, concurrency)
            await pool.open(wait=True, timeout=10)
            return pool

        pool = await trio_asyncio.aio_as_trio(open_pool)()
        send = trio_asyncio.aio_as_trio(aio_send)
        try:
            return await trio_closed_loop(
                lambda rng: send(pool, rng.choice(numbers)), concurrency, seconds, warmup
            )
        finally:
            with trio.CancelScope(shield=True):
                await trio_asyncio.aio_as_trio(pool.close)()


async def db_async_whole_loop(
    conninfo: str, load: str, concurrency: int, seconds: float, warmup: float
) -> Result:
    async with trio_asyncio.open_loop():
        result: Result = await trio_asyncio.aio_as_trio(aio_send_loop)(
            conninfo, load, concurrency, seconds, warmup
        )
        return result


def pgbench_script(load: str) -> str:
    """Our send transaction from user ``n`` to room ``n`` (``n`` drawn from the load's rooms)."""
    lo, hi = (HOT_ROOM, HOT_ROOM) if load == "1 room" else (1, ROOMS)
    room = "(lpad(to_hex(:n::int), 32, '0')::uuid)"
    user = "(('1' || lpad(to_hex(:n::int), 31, '0'))::uuid)"
    return send_script(room, user, lo, hi, CONTENT)


def db_pgbench(pgbench: str, conninfo: str, load: str, concurrency: int, seconds: float) -> Result:
    """The ceiling row: pgbench running :func:`pgbench_script` for one slice."""
    done = run_pgbench(pgbench, conninfo, pgbench_script(load), concurrency, seconds, run=run_child)
    return Result(
        done.tps,
        latencies_ms=done.latencies_ms,
        cpu_s=done.client_cpu_s,
        ops=done.transactions,
        note=f"{done.failed} failed" if done.failed else "",
    )
