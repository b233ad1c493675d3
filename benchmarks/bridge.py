"""Which bridge from trio to PostgreSQL and to Redis is fastest, on this machine, on our code paths.

Run: ``python benchmarks/bridge.py [--seconds 5] [--concurrency 8] [--database-url URL]``
(defaults: 5 s per measurement, 8 concurrent tasks, ``postgresql://postgres@127.0.0.1:5432/postgres``
as the maintenance database, ``redis://127.0.0.1:6379/0``). Takes about two minutes.

What it measures
----------------
Database: the gateway's send transaction, ``queries._SEND`` (one CTE statement that locks the room
row, inserts the message and its outbox row and moves the room's ``last_message_id``), in a
closed loop by ``--concurrency`` tasks for ``--seconds`` after a warm-up, against a scratch
database (``arcyou_bench_bridge_<pid>``, created and migrated here, dropped at the end even on
failure). Two loads: ``64 rooms`` (each send picks one of 64 rooms at random, each room with one
member, so concurrent sends rarely wait on each other's room lock) and ``1 room`` (every task
sends to the same room: the lock-contention worst case). Rows:

- ``store``: our :class:`arcyou_trio.store.Store` (sync ``psycopg_pool.ConnectionPool`` on
  ``trio.to_thread.run_sync`` with a ``CapacityLimiter``), calling ``store.send_message``.
- ``async pool, aio_as_trio per call``: psycopg ``AsyncConnectionPool`` on a trio-asyncio loop,
  each send wrapped by ``trio_asyncio.aio_as_trio`` from a trio task (what a trio-asyncio store
  would do).
- ``async pool, whole loop in asyncio``: the same pool, but each task's entire closed loop runs as
  asyncio code under trio-asyncio (one bridge crossing per task, not per send): what the asyncio
  side alone costs on trio-asyncio's loop.
- ``async pool, plain asyncio``: the same asyncio code in a child process on a stock asyncio
  loop, no trio at all (a reference: not reachable from trio).
- ``pgbench``: the ceiling, the same statement from C (``-M prepared``, as psycopg prepares a
  statement after 5 executions on a connection), ``-c concurrency -j 2 -T seconds -n``. Room and
  user ids are computed from a pgbench variable in SQL (rooms are created with ids derived from
  their number), so the server does the same work as for the Python rows.

Before every database measurement the message and outbox tables are truncated, vacuumed and a
CHECKPOINT is taken, so that no run pays for another's checkpoint. After each run the number of
messages and outbox rows in the database is checked against the number of sends completed.
``synchronous_commit`` stays at the server default (shown in the header).

Redis: publishing one ~260-byte outbox payload per message with ``--concurrency`` tasks, in
batches of 1 and of 100 per pipelined round trip: ``Bus.publish_many`` (redis.asyncio under
trio-asyncio, our bus), against a sync ``redis.Redis`` pipeline on ``trio.to_thread.run_sync``;
ceiling ``redis-benchmark -t publish -c concurrency`` with ``-P 1`` and ``-P 100``. Subscribing:
messages/s received while a separate process floods one channel (raw RESP over a socket, with a
credit window on the receiver's count so Redis never buffers more than a few MB for the
subscriber): our ``Subscriber.messages()`` (trio-asyncio), against a sync ``PubSub.get_message``
loop in a worker thread handing each message to a trio memory channel through
``trio.from_thread.run_sync(send_nowait)``, and the same thread handing over whatever it has
read in one call (``batched``).

How to read the table
---------------------
``rate`` is completed operations (transactions or messages) per second inside the measurement
window; ``p50``/``p99`` are per call (per transaction; per pipeline for Redis publish, so a
batch of 100 is one call); ``cpu/op`` is the client process's CPU time (user + system) per
operation over the whole run, the bridge's own cost (the machine has few cores, and every client
microsecond is one the server does not get); ``vs ceiling`` is the rate divided by pgbench's (same
load) or redis-benchmark's (same pipelining). Client and servers share the machine, so compare
rows of one run; run it twice to see the noise (the load average is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import ctypes
import io
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
import redis
import trio
import trio_asyncio
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from redis.connection import parse_url

from arcyou_trio.bus.redis_bus import Bus
from arcyou_trio.config import Settings
from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.store import Store, apply_migrations, queries

ROOMS = 64
HOT_ROOM = 1000  # the room number of the single-room load, kept apart from 1..ROOMS
CONTENT = {"text": "hello from the bridge benchmark"}
PAYLOAD = json.dumps(
    {
        "roomId": "00000000-0000-0000-0000-000000000001",
        "message": {
            "id": 123456,
            "user_id": "10000000-0000-0000-0000-000000000001",
            "type": "text",
            "content": CONTENT,
            "created_at": "2026-01-01T12:00:00.000Z",
            "temp_id": "c0ffee00-0000-4000-8000-000000000000",
        },
    },
    separators=(",", ":"),
)
FLOOD_WINDOW = 10_000  # messages the flood publisher may be ahead of the subscriber
FLOOD_BATCH = 256


def room_uuid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)  # SQL: lpad(to_hex(n), 32, '0')::uuid


def user_uuid(n: int) -> uuid.UUID:
    return uuid.UUID(int=(1 << 124) | n)  # SQL: ('1' || lpad(to_hex(n), 31, '0'))::uuid


def room_numbers(load: str) -> list[int]:
    return [HOT_ROOM] if load == "1 room" else list(range(1, ROOMS + 1))


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Result:
    rate: float | None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us_per_op: float | None = None
    total_ops: int = 0
    note: str = ""


class Window:
    """A closed-loop measurement: ops completing in [start, end] count, earlier ones warm up."""

    def __init__(self, seconds: float, warmup: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter() + warmup
        self.end = self.start + seconds
        self.latencies: list[float] = []
        self.items = 0
        self.total_ops = 0
        self.total_items = 0
        self.cpu0 = time.process_time()

    def running(self) -> bool:
        return time.perf_counter() < self.end

    def record(self, t0: float, items: int) -> None:
        t1 = time.perf_counter()
        self.total_ops += 1
        self.total_items += items
        if self.start <= t1 <= self.end:
            self.latencies.append(t1 - t0)
            self.items += items

    def result(self) -> Result:
        cpu = time.process_time() - self.cpu0
        p50, p99 = percentiles(self.latencies)
        return Result(
            rate=self.items / self.seconds,
            p50_ms=p50,
            p99_ms=p99,
            cpu_us_per_op=cpu / max(1, self.total_items) * 1e6,
            total_ops=self.total_ops,
        )


def percentiles(latencies_s: Sequence[float]) -> tuple[float | None, float | None]:
    if not latencies_s:
        return None, None
    ordered = sorted(latencies_s)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return at(0.50), at(0.99)


async def trio_closed_loop(
    op: Callable[[random.Random], Awaitable[object]],
    concurrency: int,
    seconds: float,
    warmup: float,
    items: int = 1,
) -> Result:
    window = Window(seconds, warmup)

    async def worker(i: int) -> None:
        rng = random.Random(i)
        while window.running():
            t0 = time.perf_counter()
            await op(rng)
            window.record(t0, items)

    async with trio.open_nursery() as nursery:
        for i in range(concurrency):
            nursery.start_soon(worker, i)
    return window.result()


async def aio_closed_loop(
    op: Callable[[random.Random], Awaitable[object]],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> Result:
    """The same loop as :func:`trio_closed_loop`, written for asyncio."""
    window = Window(seconds, warmup)

    async def worker(i: int) -> None:
        rng = random.Random(i)
        while window.running():
            t0 = time.perf_counter()
            await op(rng)
            window.record(t0, 1)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return window.result()


# -- PostgreSQL ---------------------------------------------------------------------------------


def send_params(n: int) -> dict[str, Any]:
    """Exactly the parameters ``queries.send_message`` binds to ``queries._SEND``."""
    return {
        "room_id": room_uuid(n),
        "user_id": user_uuid(n),
        "type": "text",
        "content": Jsonb(CONTENT),
        "temp_id": None,
        "reply_to": None,
    }


def create_scratch_db(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(admin_url, dbname=name)


def drop_scratch_db(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_rooms(conninfo: str) -> None:
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
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE arcyou_chat_messages, outbox")
        conn.execute("UPDATE arcyou_chat_rooms SET last_message_id = NULL, updated_at = NULL")
        conn.execute(
            "VACUUM (ANALYZE) arcyou_chat_rooms, arcyou_chat_members, arcyou_chat_messages, outbox"
        )
        try:
            conn.execute("CHECKPOINT")
        except psycopg.Error as exc:  # not superuser: carry on, runs are a little noisier
            print(f"  (no CHECKPOINT between runs: {exc})", file=sys.stderr)


def check_rows(conninfo: str, expected: int, what: str) -> str:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM arcyou_chat_messages), (SELECT count(*) FROM outbox)"
        ).fetchone()
    assert row is not None
    messages, outbox = row
    if messages == outbox == expected:
        return ""
    note = f"{what}: expected {expected} sends, found {messages} messages / {outbox} outbox rows"
    print(f"  WARNING {note}", file=sys.stderr)
    return "row count mismatch"


async def db_store(conninfo: str, load: str, concurrency: int, seconds: float, warmup: float):
    settings = Settings(database_url=conninfo)
    numbers = room_numbers(load)
    async with Store.open(settings, max_size=concurrency, wait=True) as store:

        async def op(rng: random.Random) -> None:
            n = rng.choice(numbers)
            sent = await store.send_message(
                room_id=room_uuid(n), user_id=user_uuid(n), type="text", content=CONTENT
            )
            if not isinstance(sent, ChatMessage):
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
    """``queries.send_message`` for an ``AsyncConnection``: same SQL, parameters, row mapping."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries._SEND, send_params(n))
        row = await cur.fetchone()
    if row is None:
        raise RuntimeError("send refused")
    return queries._message(row)


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
        return await trio_asyncio.aio_as_trio(aio_send_loop)(
            conninfo, load, concurrency, seconds, warmup
        )


def db_plain_asyncio(
    conninfo: str, load: str, concurrency: int, seconds: float, warmup: float
) -> Result:
    """Run :func:`aio_send_loop` on a stock asyncio loop in a child process (no trio there)."""
    spec = {
        "conninfo": conninfo,
        "load": load,
        "concurrency": concurrency,
        "seconds": seconds,
        "warmup": warmup,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--child-plain-asyncio", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=seconds + warmup + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"plain asyncio child failed: {done.stderr.strip()[-2000:]}")
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


def plain_asyncio_child(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result = asyncio.run(aio_send_loop(**spec))
    print(json.dumps(result.__dict__))


def pgbench_script(load: str) -> str:
    lo, hi = (HOT_ROOM, HOT_ROOM) if load == "1 room" else (1, ROOMS)
    sql = queries._SEND.strip()
    for name, text in {
        "%(room_id)s": "(lpad(to_hex(:n::int), 32, '0')::uuid)",
        "%(user_id)s": "(('1' || lpad(to_hex(:n::int), 31, '0'))::uuid)",
        "%(type)s": "'text'",
        "%(content)s": f"'{json.dumps(CONTENT)}'::jsonb",
        "%(temp_id)s": "NULL",
        "%(reply_to)s": "NULL",
    }.items():
        sql = sql.replace(name, text)
    assert "%(" not in sql, sql
    return f"\\set n random({lo}, {hi})\n{sql};\n"


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    return str(candidates[-1]) if candidates else None


def db_pgbench(pgbench: str, conninfo: str, load: str, concurrency: int, seconds: float) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as tmp:
        script = Path(tmp, "send.sql")
        script.write_text(pgbench_script(load))
        prefix = Path(tmp, "lat")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [
                pgbench,
                "-n",
                "-M",
                "prepared",
                "-c",
                str(concurrency),
                "-j",
                str(min(2, concurrency)),
                "-T",
                str(max(1, round(seconds))),
                "-f",
                str(script),
                "-l",
                "--log-prefix",
                str(prefix),
                conninfo,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-2000:]}")
        tps = re.search(r"^tps = ([\d.]+)", done.stdout, re.MULTILINE)
        processed = re.search(r"actually processed: (\d+)", done.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
        if tps is None or processed is None:
            raise RuntimeError(f"cannot parse pgbench output:\n{done.stdout}")
        latencies = []
        for log in Path(tmp).glob("lat.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1e6)
        p50, p99 = percentiles(latencies)
        total = int(processed.group(1))
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        note = f"{failed.group(1)} failed" if failed and failed.group(1) != "0" else ""
        return Result(float(tps.group(1)), p50, p99, cpu / max(1, total) * 1e6, total, note)


# -- Redis --------------------------------------------------------------------------------------


async def redis_bus_publish(
    url: str, channel: str, batch: int, concurrency: int, seconds: float, warmup: float
) -> Result:
    messages = [(channel, PAYLOAD)] * batch
    async with Bus.open(url) as bus:
        return await trio_closed_loop(
            lambda _rng: bus.publish_many(messages), concurrency, seconds, warmup, items=batch
        )


async def redis_sync_publish(
    url: str, channel: str, batch: int, concurrency: int, seconds: float, warmup: float
) -> Result:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    limiter = trio.CapacityLimiter(concurrency)

    def publish() -> None:
        with client.pipeline(transaction=False) as pipe:
            for _ in range(batch):
                pipe.publish(channel, PAYLOAD)
            pipe.execute()

    try:
        return await trio_closed_loop(
            lambda _rng: trio.to_thread.run_sync(publish, limiter=limiter),
            concurrency,
            seconds,
            warmup,
            items=batch,
        )
    finally:
        client.close()


def redis_benchmark(tool: str, url: str, pipeline: int, concurrency: int, requests: int) -> Result:
    parts = parse_url(url)
    command = [
        tool,
        "-h",
        str(parts.get("host", "127.0.0.1")),
        "-p",
        str(parts.get("port", 6379)),
        "-t",
        "publish",
        "-n",
        str(requests),
        "-c",
        str(concurrency),
        "-d",
        str(len(PAYLOAD)),
        "-P",
        str(pipeline),
        "--csv",
    ]
    if parts.get("password"):
        command += ["-a", str(parts["password"]), "--no-auth-warning"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()[-2000:]}")
    rows = [r for r in csv.DictReader(io.StringIO(done.stdout)) if r.get("test") == "PUBLISH"]
    if not rows:
        raise RuntimeError(f"cannot parse redis-benchmark output:\n{done.stdout}")
    row = rows[-1]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Result(
        float(row["rps"]),
        float(row["p50_latency_ms"]),
        float(row["p99_latency_ms"]),
        cpu / requests * 1e6,
        requests,
    )


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def flood(url: str, channel: str, received: Any, stop: Any) -> None:
    """Child process: PUBLISH as fast as Redis takes it, at most FLOOD_WINDOW ahead of the reader.

    Only deliveries count (PUBLISH returns the number of receivers), so messages published
    before the subscriber is there never use up the window.
    """
    parts = parse_url(url)
    sock = socket.create_connection((parts.get("host", "127.0.0.1"), parts.get("port", 6379)))
    if parts.get("password"):
        user = [parts["username"]] if parts.get("username") else []
        sock.sendall(_resp("AUTH", *user, parts["password"]))
        sock.recv(1024)
    commands = _resp("PUBLISH", channel, PAYLOAD) * FLOOD_BATCH
    delivered = 0
    pending = b""
    while not stop.value:
        if delivered - received.value >= FLOOD_WINDOW:
            time.sleep(0.0002)
            continue
        sock.sendall(commands)
        replies = 0
        while replies < FLOOD_BATCH:
            chunk = sock.recv(65536)
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\r\n")
            for line in lines:
                replies += 1
                if line.startswith(b"-"):
                    raise RuntimeError(line.decode())
                if line != b":0":
                    delivered += 1
    sock.close()


async def flood_rate(url: str, channel: str, counter: Any, seconds: float, warmup: float):
    """Start the flood once the subscriber is confirmed; measure the subscriber's receive rate."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.RawValue(ctypes.c_bool, False)
    proc = ctx.Process(target=flood, args=(url, channel, counter, stop), daemon=True)
    cpu0 = time.process_time()
    proc.start()
    try:
        for _ in range(3000):
            if counter.value:
                break
            await trio.sleep(0.01)
        else:
            raise RuntimeError("the flood publisher never reached the subscriber")
        await trio.sleep(warmup)
        t0, n0 = time.perf_counter(), counter.value
        await trio.sleep(seconds)
        t1, n1 = time.perf_counter(), counter.value
        cpu = time.process_time() - cpu0
        return Result((n1 - n0) / (t1 - t0), cpu_us_per_op=cpu / max(1, n1) * 1e6, total_ops=n1)
    finally:
        stop.value = True
        await trio.to_thread.run_sync(proc.join, 5)
        if proc.is_alive():
            proc.terminate()
            await trio.to_thread.run_sync(proc.join, 5)


async def redis_bus_subscribe(url: str, channel: str, counter: Any, seconds: float, warmup: float):
    async with Bus.open(url) as bus, bus.subscriber() as sub, trio.open_nursery() as nursery:

        async def consume() -> None:
            async for _channel, _data in sub.messages():
                counter.value += 1

        nursery.start_soon(consume)
        await sub.subscribe(channel)
        result = await flood_rate(url, channel, counter, seconds, warmup)
        nursery.cancel_scope.cancel()
    return result


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def redis_thread_subscribe(
    url: str, channel: str, counter: Any, seconds: float, warmup: float, batched: bool
):
    """A sync PubSub read loop on a worker thread feeding a trio memory channel."""
    send, receive = trio.open_memory_channel[Any](1000)
    subscribed = trio.Event()
    stop = threading.Event()
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=None)

    def hand_over(item: Any) -> None:
        try:
            trio.from_thread.run_sync(send.send_nowait, item)
        except trio.WouldBlock:
            trio.from_thread.run(send.send, item)

    def reader() -> None:
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(channel)
            while not stop.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    trio.from_thread.run_sync(subscribed.set)
                if message["type"] != "message":
                    continue
                item = (_text(message["channel"]), _text(message["data"]))
                if not batched:
                    hand_over(item)
                    continue
                items = [item]
                while len(items) < 1024:
                    more = pubsub.get_message(timeout=0)
                    if more is None:
                        break
                    if more["type"] == "message":
                        items.append((_text(more["channel"]), _text(more["data"])))
                hand_over(items)
        finally:
            pubsub.close()
            trio.from_thread.run_sync(send.close)

    async def consume() -> None:
        async with receive:
            async for got in receive:
                if batched:
                    for _channel, _data in got:
                        counter.value += 1
                else:
                    counter.value += 1

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            nursery.start_soon(trio.to_thread.run_sync, reader)
            with trio.fail_after(10):
                await subscribed.wait()
            try:
                return await flood_rate(url, channel, counter, seconds, warmup)
            finally:
                stop.set()
    finally:
        client.close()


# -- report -------------------------------------------------------------------------------------


@dataclass
class Row:
    area: str
    bridge: str
    load: str
    unit: str
    result: Result | None
    ceiling: str | None = None  # the key of the row this one is compared with
    is_ceiling: bool = False
    error: str = ""


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def render(rows: list[Row]) -> str:
    ceilings = {
        (r.area, r.load): r.result.rate for r in rows if r.is_ceiling and r.result and r.result.rate
    }
    header = ["area", "bridge", "load", "rate", "p50", "p99", "cpu/op", "vs ceiling"]
    table = [header]
    for r in rows:
        if r.result is None or r.result.rate is None:
            table.append([r.area, r.bridge, r.load, f"FAILED: {r.error}"[:60], "", "", "", ""])
            continue
        res = r.result
        base = ceilings.get((r.area, r.load)) if r.ceiling is not None else None
        ratio = "1.00 (ceiling)" if r.is_ceiling else (f"{res.rate / base:.2f}" if base else "-")
        cpu = "-" if res.cpu_us_per_op is None else f"{res.cpu_us_per_op:.0f} us"
        if res.note:
            ratio += f"  [{res.note}]"
        table.append(
            [
                r.area,
                r.bridge,
                r.load,
                f"{res.rate:,.0f} {r.unit}",
                fmt_ms(res.p50_ms),
                fmt_ms(res.p99_ms),
                cpu,
                ratio,
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {3, 4, 5, 6}
    out = []
    for k, line in enumerate(table):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def environment(conninfo: str, redis_url: str, pgbench: str | None, rb: str | None) -> list[str]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "?"

    with psycopg.connect(conninfo, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
    client = redis.Redis.from_url(redis_url)
    try:
        redis_server = client.info("server").get("redis_version", "?")
    finally:
        client.close()
    try:
        hiredis = dist_version("hiredis")
    except Exception:
        hiredis = "no"
    return [
        f"python {platform.python_version()} ({platform.machine()}), trio {trio.__version__}, "
        f"trio-asyncio {trio_asyncio.__version__}",
        f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()}), "
        f"psycopg-pool {dist_version('psycopg-pool')}, redis-py {redis.__version__} "
        f"(hiredis: {hiredis})",
        f"PostgreSQL {pg_version} (synchronous_commit={sync_commit}), Redis {redis_server}",
        f"pgbench: {run(pgbench, '--version') if pgbench else 'not found'}; "
        f"redis-benchmark: {run(rb, '--version') if rb else 'not found'}",
        f"nproc {run('nproc')}, loadavg {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def measure(rows: list[Row], row: Row, fn: Callable[[], Result]) -> None:
    print(f"  {row.area} {row.bridge} / {row.load} ...", file=sys.stderr, flush=True)
    try:
        row.result = fn()
    except Exception as exc:  # a broken bridge is a finding, not a reason to lose the others
        row.error = " ".join(str(exc).split()) or type(exc).__name__
        print(f"  FAILED: {row.error}", file=sys.stderr)
    rows.append(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="not counted, per run (1)")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks / clients (8)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database to connect to for CREATE/DROP DATABASE of the scratch database",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child-plain-asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_plain_asyncio:
        plain_asyncio_child(args.child_plain_asyncio)
        return 0

    # SIGTERM runs the finally blocks (dropping the scratch database) like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    c, secs, warm = args.concurrency, args.seconds, args.warmup
    started = time.perf_counter()
    pgbench = find_pgbench()
    rb = shutil.which("redis-benchmark")
    name = f"arcyou_bench_bridge_{os.getpid()}"
    host = conninfo_to_dict(args.database_url).get("host", "")
    print(f"scratch database {name} on {host or 'default host'}", file=sys.stderr)
    conninfo = create_scratch_db(args.database_url, name)
    rows: list[Row] = []
    try:
        apply_migrations(conninfo)
        seed_rooms(conninfo)
        env = environment(conninfo, args.redis_url, pgbench, rb)

        for load in ("64 rooms", "1 room"):
            db_rows: list[tuple[str, Callable[[], Result], bool]] = [
                (
                    "store: sync psycopg pool via trio threads",
                    lambda load=load: trio.run(db_store, conninfo, load, c, secs, warm),
                    False,
                ),
                (
                    "psycopg async pool via trio-asyncio, aio_as_trio per call",
                    lambda load=load: trio.run(db_async_per_call, conninfo, load, c, secs, warm),
                    False,
                ),
                (
                    "psycopg async pool via trio-asyncio, whole loop in asyncio",
                    lambda load=load: trio.run(db_async_whole_loop, conninfo, load, c, secs, warm),
                    False,
                ),
                (
                    "psycopg async pool, plain asyncio (no trio; reference)",
                    lambda load=load: db_plain_asyncio(conninfo, load, c, secs, warm),
                    False,
                ),
            ]
            if pgbench:
                db_rows.insert(
                    0,
                    (
                        f"pgbench -M prepared -c {c} -j {min(2, c)} (C, libpq)",
                        lambda load=load: db_pgbench(pgbench, conninfo, load, c, secs),
                        True,
                    ),
                )
            for bridge, fn, is_ceiling in db_rows:
                reset_tables(conninfo)
                row = Row("db", bridge, load, "tx/s", None, "db", is_ceiling)
                measure(rows, row, fn)
                if row.result is not None:
                    row.result.note = check_rows(conninfo, row.result.total_ops, bridge)

        pub = f"bench:bridge:{os.getpid()}:publish"
        for batch in (1, 100):
            load = f"batch {batch}"
            if rb:
                measure(
                    rows,
                    Row(
                        "redis",
                        f"redis-benchmark -t publish -c {c} -P {batch} (C)",
                        load,
                        "msg/s",
                        None,
                        "pub",
                        True,
                    ),
                    lambda batch=batch: redis_benchmark(
                        rb, args.redis_url, batch, c, 200_000 if batch == 1 else 2_000_000
                    ),
                )
            measure(
                rows,
                Row("redis", "bus: redis.asyncio via trio-asyncio", load, "msg/s", None, "pub"),
                lambda batch=batch: trio.run(
                    redis_bus_publish, args.redis_url, pub, batch, c, secs, warm
                ),
            )
            measure(
                rows,
                Row("redis", "sync redis pipeline via trio threads", load, "msg/s", None, "pub"),
                lambda batch=batch: trio.run(
                    redis_sync_publish, args.redis_url, pub, batch, c, secs, warm
                ),
            )

        ctx = multiprocessing.get_context("spawn")
        load = "1 channel flood"
        subscribers: list[tuple[str, Callable[..., Awaitable[Result]], tuple[Any, ...]]] = [
            ("subscriber: redis.asyncio via trio-asyncio", redis_bus_subscribe, ()),
            ("sync PubSub thread, from_thread per message", redis_thread_subscribe, (False,)),
            ("sync PubSub thread, from_thread per read batch", redis_thread_subscribe, (True,)),
        ]
        for i, (bridge, fn, extra) in enumerate(subscribers):
            counter = ctx.RawValue(ctypes.c_longlong, 0)
            channel = f"bench:bridge:{os.getpid()}:flood:{i}"
            measure(
                rows,
                Row("redis", bridge, load, "msg/s", None),
                lambda fn=fn, channel=channel, counter=counter, extra=extra: trio.run(
                    fn, args.redis_url, channel, counter, secs, warm, *extra
                ),
            )
    finally:
        with contextlib.suppress(Exception):
            drop_scratch_db(args.database_url, name)
            print(f"dropped scratch database {name}", file=sys.stderr)

    print()
    print(f"bridge benchmark: {secs:g} s per measurement after {warm:g} s warm-up, concurrency {c}")
    for line in env:
        print(f"  {line}")
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  loadavg at end {loadavg}, total {time.perf_counter() - started:.0f} s")
    print()
    print(render(rows))
    return 0 if all(r.result is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
