"""Which bridge from trio to PostgreSQL and to Redis is fastest, on this machine, on our code paths.

Run: ``python benchmarks/bridge.py [--seconds 5] [--concurrency 8] [--database-url URL]``
(also ``--rounds 2``, ``--warmup 0.5``, ``--redis-url redis://127.0.0.1:6379/0``). The database
URL names a database to connect to for ``CREATE``/``DROP DATABASE`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). About two minutes with the defaults.

What it measures
----------------
Every row is measured for ``--seconds`` in total, split into ``--rounds`` slices; a round
measures every row of a section once, in order, so whatever else the machine is doing is spread
over the rows rather than landing on one of them. Each slice starts its client afresh and
discards ``--warmup`` seconds before counting.

Database: the gateway's send transaction, ``queries._SEND`` (one CTE statement that locks the room
row, inserts the message and its outbox row and moves the room's ``last_message_id``, autocommit:
one round trip, one commit), in a closed loop by ``--concurrency`` tasks, against a scratch
database (``arcyou_bench_bridge_<pid>``, created and migrated here, dropped at the end, also on
an error, Ctrl-C or SIGTERM). Two loads: ``64 rooms`` (each send picks one of 64 rooms at random,
each room with one member, so concurrent sends rarely wait on each other's room lock) and
``1 room`` (every task sends to the same room: the lock-contention worst case). Rows:

- ``store``: our :class:`arcyou_trio.store.Store` (sync ``psycopg_pool.ConnectionPool`` on
  ``trio.to_thread.run_sync`` with a ``CapacityLimiter``), calling ``store.send_message``.
- ``aio_as_trio per call``: psycopg ``AsyncConnectionPool`` (same sizes and connection options
  as the store's pool) on a trio-asyncio loop, each send wrapped by ``trio_asyncio.aio_as_trio``
  from a trio task: what a trio-asyncio store would do.
- ``whole loop in asyncio``: the same pool, but each task's entire closed loop runs as asyncio
  code under trio-asyncio (one bridge crossing per task, not per send): what the asyncio side
  costs on trio-asyncio's loop without the per-call crossing.
- ``plain asyncio``: the same asyncio code in a child process on a stock asyncio loop, no trio
  at all (a reference, not an option for us).
- ``pgbench``: the ceiling, the same statement from C (``-M prepared``, as psycopg prepares a
  statement after 5 executions on a connection), ``-c concurrency -j 2 -n -T`` (slice rounded
  up to whole seconds). Rooms are created with ids derived from their number, and the script
  computes room and user ids from a pgbench variable in SQL, so the server does the same work.

Before each load the message and outbox tables are truncated and vacuumed and a CHECKPOINT is
taken. After every slice the messages and outbox rows written are checked against the sends
completed (a mismatch is flagged in the table). ``synchronous_commit`` is left at the server's
setting (shown in the header).

Redis: publishing a ~260-byte outbox payload per message with ``--concurrency`` tasks, in
batches of 1 and of 100 per pipelined round trip: ``Bus.publish_many`` (redis.asyncio under
trio-asyncio, our bus), a sync ``redis.Redis`` pipeline on ``trio.to_thread.run_sync``, and the
Bus's pipeline code on plain asyncio in a child process (reference). Ceiling:
``redis-benchmark -c concurrency -P 1|100 PUBLISH channel payload`` (7.0 has no built-in publish
test, so the command is spelled out). Nobody subscribes to the publish channel.

Subscribing: messages/s received while a separate process floods one channel (raw RESP over a
socket, kept at most 10,000 delivered messages ahead of the receiver's count, so Redis never
buffers more than a few MB for the subscriber): our ``Subscriber.messages()`` (trio-asyncio);
a sync ``PubSub.get_message`` loop in a worker thread handing each message to a trio memory
channel through ``trio.from_thread.run_sync(send_nowait)``; and that thread handing over, in one
call, everything it can read without waiting (``per read batch``).

How to read the table
---------------------
``rate``: operations (transactions or messages) completed per second inside the measurement
windows, the mean of the slices; ``+-``: half the range of the slices' rates relative to that
mean (a noise gauge). ``p50``/``p99``: latency per call over all slices (per transaction; per
pipeline for Redis publish, so a batch of 100 is one call; redis-benchmark reports its own
percentiles, the table shows the median p50 and the worst p99 of its slices). ``cpu/op``: the
client process's CPU time (user + system) per operation over whole slices, warm-up included: the
bridge's own cost. A Python client is bound to about one core by the GIL, so its ceiling is
roughly 1 s / cpu-per-op; on a small machine every client microsecond is also one the server does
not get. ``vs ceiling``: rate divided by pgbench's (same load) or redis-benchmark's (same
pipelining). Client and servers share the machine: compare rows of one run, and run it twice to
see how much the figures move (the load average at start and end is printed).

Note: ``trio_asyncio`` is imported before psycopg on purpose (see the imports).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import math
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

# trio_asyncio first: it patches asyncio.get_running_loop, and psycopg.waiting binds that name at
# import time; imported the other way round, psycopg's async connect fails under trio-asyncio with
# "no running event loop".
import trio_asyncio

# isort: split
import psycopg
import psycopg_pool
import redis
import redis.asyncio as aredis
import trio
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from redis.connection import parse_url

from arcyou_trio.bench.ceilings import parse_redis_benchmark_csv, redis_benchmark_command
from arcyou_trio.bus.redis_bus import Bus
from arcyou_trio.config import Settings
from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.store import Sent, Store, apply_migrations, queries

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
# Child processes of this run (pgbench, redis-benchmark, plain-asyncio children, the flood
# publisher), so that an interrupt can stop them: see ``on_signal``.
CHILDREN: set[subprocess.Popen[str] | multiprocessing.process.BaseProcess] = set()
FLOOD_WINDOW = 10_000  # messages the flood publisher may be ahead of the subscriber
FLOOD_BATCH = 256


def run_child(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with the child registered in CHILDREN while it runs."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CHILDREN.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        CHILDREN.discard(proc)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def room_uuid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)  # SQL: lpad(to_hex(n), 32, '0')::uuid


def user_uuid(n: int) -> uuid.UUID:
    return uuid.UUID(int=(1 << 124) | n)  # SQL: ('1' || lpad(to_hex(n), 31, '0'))::uuid


def room_numbers(load: str) -> list[int]:
    return [HOT_ROOM] if load == "1 room" else list(range(1, ROOMS + 1))


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Result:
    """One measured slice. ``ops`` and ``cpu_s`` cover the whole slice, warm-up included."""

    rate: float
    latencies_ms: list[float] | None = None  # per call, inside the measurement window
    p50_ms: float | None = None  # only when the tool reports percentiles, not samples
    p99_ms: float | None = None
    cpu_s: float | None = None  # the client's CPU time (user + system)
    ops: int = 0
    note: str = ""


class Window:
    """A closed-loop measurement: ops completing in [start, end] count, earlier ones warm up."""

    def __init__(self, seconds: float, warmup: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter() + warmup
        self.end = self.start + seconds
        self.latencies: list[float] = []
        self.items = 0
        self.total_items = 0
        self.cpu0 = time.process_time()

    def running(self) -> bool:
        return time.perf_counter() < self.end

    def record(self, t0: float, items: int) -> None:
        t1 = time.perf_counter()
        self.total_items += items
        if self.start <= t1 <= self.end:
            self.latencies.append((t1 - t0) * 1000)
            self.items += items

    def result(self) -> Result:
        return Result(
            rate=self.items / self.seconds,
            latencies_ms=self.latencies,
            cpu_s=time.process_time() - self.cpu0,
            ops=self.total_items,
        )


def percentiles(latencies_ms: Sequence[float]) -> tuple[float | None, float | None]:
    if not latencies_ms:
        return None, None
    ordered = sorted(latencies_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

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
    items: int = 1,
) -> Result:
    """The same loop as :func:`trio_closed_loop`, written for asyncio."""
    window = Window(seconds, warmup)

    async def worker(i: int) -> None:
        rng = random.Random(i)
        while window.running():
            t0 = time.perf_counter()
            await op(rng)
            window.record(t0, items)

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


async def db_store(conninfo: str, load: str, concurrency: int, seconds: float, warmup: float):
    settings = Settings(database_url=conninfo)
    numbers = room_numbers(load)
    async with Store.open(settings, max_size=concurrency, wait=True) as store:

        async def op(rng: random.Random) -> None:
            n = rng.choice(numbers)
            sent = await store.send_message(
                room_id=room_uuid(n), user_id=user_uuid(n), type="text", content=CONTENT
            )
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


def plain_asyncio(fn: Callable[..., Awaitable[Result]], **kwargs: Any) -> Result:
    """Run ``fn(**kwargs)`` on a stock asyncio loop in a child process (no trio there)."""
    spec = {"fn": fn.__name__, "kwargs": kwargs}
    done = run_child(
        [sys.executable, __file__, "--child-plain-asyncio", json.dumps(spec)],
        timeout=kwargs["seconds"] + kwargs["warmup"] + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"plain asyncio child failed: {done.stderr.strip()[-2000:]}")
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


def plain_asyncio_child(spec_json: str) -> None:
    spec = json.loads(spec_json)
    fn = {f.__name__: f for f in (aio_send_loop, aio_publish_loop)}[spec["fn"]]
    result = asyncio.run(fn(**spec["kwargs"]))
    print(json.dumps(dataclasses.asdict(result)))


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
    # pgbench reads ":NAME" as a variable even inside string literals: spell the colons of the
    # timestamp format another way (a constant expression, folded once at plan time).
    sql = sql.replace("HH24:MI:SS", "HH24' || chr(58) || 'MI' || chr(58) || 'SS")
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
        done = run_child(
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
                str(max(1, math.ceil(seconds))),
                "-f",
                str(script),
                "-l",
                "--log-prefix",
                str(prefix),
                conninfo,
            ],
            timeout=seconds + 60,
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
                    latencies.append(int(fields[2]) / 1000)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        note = f"{failed.group(1)} failed" if failed and failed.group(1) != "0" else ""
        return Result(
            float(tps.group(1)),
            latencies_ms=latencies,
            cpu_s=cpu,
            ops=int(processed.group(1)),
            note=note,
        )


# -- Redis --------------------------------------------------------------------------------------


async def redis_bus_publish(
    url: str, channel: str, batch: int, concurrency: int, seconds: float, warmup: float
) -> Result:
    messages = [(channel, PAYLOAD)] * batch
    async with Bus.open(url) as bus:
        return await trio_closed_loop(
            lambda _rng: bus.publish_many(messages), concurrency, seconds, warmup, items=batch
        )


async def aio_publish_loop(
    url: str, channel: str, batch: int, concurrency: int, seconds: float, warmup: float
) -> Result:
    """``Bus.publish_many``'s pipeline as plain asyncio code (the reference row)."""
    client = aredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)

    async def publish(_rng: random.Random) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(batch):
                pipe.publish(channel, PAYLOAD)
            await pipe.execute()

    try:
        return await aio_closed_loop(publish, concurrency, seconds, warmup, items=batch)
    finally:
        await client.aclose()


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


def redis_benchmark(
    tool: str, url: str, channel: str, pipeline: int, concurrency: int, requests: int
) -> Result:
    command = redis_benchmark_command(tool, url, channel, concurrency, pipeline, requests, PAYLOAD)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = run_child(command, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()[-2000:]}")
    row = parse_redis_benchmark_csv(done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Result(
        row["rps"],
        p50_ms=row["p50_latency_ms"],
        p99_ms=row["p99_latency_ms"],
        cpu_s=cpu,
        ops=requests,
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


def new_counter() -> Any:
    """A message counter the flood publisher (another process) can read."""
    return multiprocessing.get_context("spawn").RawValue(ctypes.c_longlong, 0)


async def flood_rate(url: str, channel: str, counter: Any, seconds: float, warmup: float):
    """Start the flood once the subscriber is confirmed; measure the subscriber's receive rate."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.RawValue(ctypes.c_bool, False)
    proc = ctx.Process(target=flood, args=(url, channel, counter, stop), daemon=True)
    cpu0 = time.process_time()
    proc.start()
    CHILDREN.add(proc)
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
        return Result((n1 - n0) / (t1 - t0), cpu_s=time.process_time() - cpu0, ops=n1)
    finally:
        stop.value = True
        await trio.to_thread.run_sync(proc.join, 5)
        if proc.is_alive():
            proc.terminate()
            await trio.to_thread.run_sync(proc.join, 5)
        CHILDREN.discard(proc)


async def redis_bus_subscribe(url: str, channel: str, seconds: float, warmup: float) -> Result:
    counter = new_counter()
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
    url: str, channel: str, seconds: float, warmup: float, batched: bool
) -> Result:
    """A sync PubSub read loop on a worker thread feeding a trio memory channel."""
    counter = new_counter()
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
    run: Callable[[float], Result]  # measures one slice of the given length
    is_ceiling: bool = False
    compare: bool = True  # show a ratio to the ceiling row of the same area and load
    results: list[Result] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


@dataclass
class Summary:
    rate: float
    spread: float  # (max - min) / 2 / mean of the slices' rates
    p50_ms: float | None
    p99_ms: float | None
    cpu_us_per_op: float | None
    note: str


def summarize(results: list[Result]) -> Summary:
    rates = [r.rate for r in results]
    mean = sum(rates) / len(rates)
    spread = (max(rates) - min(rates)) / 2 / mean if mean else 0.0
    if all(r.latencies_ms is not None for r in results):
        p50, p99 = percentiles([x for r in results for x in r.latencies_ms or ()])
    else:  # tool-reported percentiles: the median of the p50s, the worst p99
        p50s = sorted(r.p50_ms for r in results if r.p50_ms is not None)
        p99s = [r.p99_ms for r in results if r.p99_ms is not None]
        p50 = p50s[len(p50s) // 2] if p50s else None
        p99 = max(p99s) if p99s else None
    cpu = [r.cpu_s for r in results if r.cpu_s is not None]
    ops = sum(r.ops for r in results if r.cpu_s is not None)
    cpu_per_op = sum(cpu) / ops * 1e6 if cpu and ops else None
    note = ", ".join(sorted({r.note for r in results if r.note}))
    return Summary(mean, spread, p50, p99, cpu_per_op, note)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def render(rows: list[Row]) -> str:
    summaries = {id(r): summarize(r.results) for r in rows if r.results}
    ceilings = {(r.area, r.load): summaries[id(r)].rate for r in rows if r.is_ceiling and r.results}
    header = ["area", "bridge", "load", "rate", "+-", "p50", "p99", "cpu/op", "vs ceiling"]
    table = [header]
    for r in rows:
        if not r.results:
            table.append([r.area, r.bridge, r.load, "FAILED", "", "", "", "", r.errors[-1][:100]])
            continue
        summary = summaries[id(r)]
        base = ceilings.get((r.area, r.load)) if r.compare else None
        ratio = f"{summary.rate / base:.2f}" if base else "-"
        if r.is_ceiling:
            ratio = "ceiling"
        notes = [summary.note] if summary.note else []
        if r.errors:
            notes.append(f"{len(r.errors)} slice(s) failed: {r.errors[-1][:60]}")
        if notes:
            ratio += f"  [{'; '.join(notes)}]"
        cpu_us = summary.cpu_us_per_op
        cpu = "-" if cpu_us is None else f"{cpu_us:.{1 if cpu_us < 10 else 0}f} us"
        table.append(
            [
                r.area,
                r.bridge,
                r.load,
                f"{summary.rate:,.0f} {r.unit}",
                f"{summary.spread:.0%}",
                fmt_ms(summary.p50_ms),
                fmt_ms(summary.p99_ms),
                cpu,
                ratio,
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {3, 4, 5, 6, 7}
    out = []
    for k, line in enumerate(table):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0 or (k + 1 < len(table) and table[k + 1][0] != line[0]):
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
        f"nproc {run('nproc')}",
    ]


def measure_rows(rows: list[Row], rounds: int, seconds: float) -> None:
    """Each round measures every row once, in order, for ``seconds / rounds``: interleaving
    spreads whatever else the machine is doing across the rows instead of onto one of them."""
    for k in range(rounds):
        for row in rows:
            print(f"  [{k + 1}/{rounds}] {row.area} {row.bridge} / {row.load}", file=sys.stderr)
            try:
                row.results.append(row.run(seconds / rounds))
            except Exception as exc:  # a broken bridge is a finding; keep measuring the others
                row.errors.append(" ".join(str(exc).split()) or type(exc).__name__)
                print(f"  FAILED: {row.errors[-1]}", file=sys.stderr)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per row (5)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved slices per row (2)")
    parser.add_argument("--warmup", type=float, default=0.5, help="not counted, per slice (0.5)")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks / clients (8)")
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database to connect to for CREATE/DROP DATABASE of the scratch database",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child-plain-asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_plain_asyncio:
        plain_asyncio_child(args.child_plain_asyncio)
        return 0

    name = f"arcyou_bench_bridge_{os.getpid()}"

    def on_signal(signum: int, _frame: object) -> None:
        # Not KeyboardInterrupt: raised into trio-asyncio while psycopg's async pool is busy, it
        # leaves the run hung for good. Stop the children, drop the database, leave at once.
        for child in list(CHILDREN):
            with contextlib.suppress(Exception):
                child.kill()
                if isinstance(child, subprocess.Popen):
                    child.wait(timeout=2)
                else:
                    child.join(timeout=2)
        with contextlib.suppress(Exception):
            drop_scratch_db(args.database_url, name)
            print(f"\ninterrupted: dropped scratch database {name}", file=sys.stderr)
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    c, warm, url = args.concurrency, args.warmup, args.redis_url
    started, load_at_start = time.perf_counter(), loadavg()
    pgbench = find_pgbench()
    rb = shutil.which("redis-benchmark")
    print(f"scratch database {name}", file=sys.stderr)
    conninfo = create_scratch_db(args.database_url, name)
    rows: list[Row] = []
    try:
        apply_migrations(conninfo)
        seed_rooms(conninfo)
        env = environment(conninfo, url, pgbench, rb)

        for load in ("64 rooms", "1 room"):
            db: list[tuple[str, Callable[[float], Result], bool]] = [
                (
                    "store: sync psycopg pool via trio threads",
                    lambda s, load=load: trio.run(db_store, conninfo, load, c, s, warm),
                    False,
                ),
                (
                    "psycopg async pool via trio-asyncio, aio_as_trio per call",
                    lambda s, load=load: trio.run(db_async_per_call, conninfo, load, c, s, warm),
                    False,
                ),
                (
                    "psycopg async pool via trio-asyncio, whole loop in asyncio",
                    lambda s, load=load: trio.run(db_async_whole_loop, conninfo, load, c, s, warm),
                    False,
                ),
                (
                    "psycopg async pool, plain asyncio (no trio; reference)",
                    lambda s, load=load: plain_asyncio(
                        aio_send_loop,
                        conninfo=conninfo,
                        load=load,
                        concurrency=c,
                        seconds=s,
                        warmup=warm,
                    ),
                    False,
                ),
            ]
            if pgbench:
                db.insert(
                    0,
                    (
                        f"pgbench -M prepared -c {c} -j {min(2, c)} (C, libpq)",
                        lambda s, load=load: db_pgbench(pgbench, conninfo, load, c, s),
                        True,
                    ),
                )
            section = [
                Row("db", bridge, load, "tx/s", checked(conninfo, fn), is_ceiling)
                for bridge, fn, is_ceiling in db
            ]
            reset_tables(conninfo)
            measure_rows(section, args.rounds, args.seconds)
            rows += section

        pub = f"bench:bridge:{os.getpid()}:publish"
        for batch in (1, 100):
            load = f"batch {batch}"
            section = []
            if rb:
                requests = 200_000 if batch == 1 else 2_000_000
                section.append(
                    Row(
                        "redis",
                        f"redis-benchmark PUBLISH -c {c} -P {batch} (C)",
                        load,
                        "msg/s",
                        lambda _s, batch=batch, n=requests: redis_benchmark(
                            rb, url, pub, batch, c, n
                        ),
                        is_ceiling=True,
                    )
                )
            section += [
                Row(
                    "redis",
                    "bus: redis.asyncio via trio-asyncio",
                    load,
                    "msg/s",
                    lambda s, batch=batch: trio.run(redis_bus_publish, url, pub, batch, c, s, warm),
                ),
                Row(
                    "redis",
                    "sync redis pipeline via trio threads",
                    load,
                    "msg/s",
                    lambda s, batch=batch: trio.run(
                        redis_sync_publish, url, pub, batch, c, s, warm
                    ),
                ),
                Row(
                    "redis",
                    "redis.asyncio, plain asyncio (no trio; reference)",
                    load,
                    "msg/s",
                    lambda s, batch=batch: plain_asyncio(
                        aio_publish_loop,
                        url=url,
                        channel=pub,
                        batch=batch,
                        concurrency=c,
                        seconds=s,
                        warmup=warm,
                    ),
                ),
            ]
            measure_rows(section, args.rounds, args.seconds)
            rows += section

        flood = f"bench:bridge:{os.getpid()}:flood"
        load = "1 channel flood"
        section = [
            Row(
                "redis",
                "subscriber: redis.asyncio via trio-asyncio",
                load,
                "msg/s",
                lambda s: trio.run(redis_bus_subscribe, url, flood + ":bus", s, warm),
                compare=False,
            ),
            Row(
                "redis",
                "sync PubSub thread, from_thread per message",
                load,
                "msg/s",
                lambda s: trio.run(redis_thread_subscribe, url, flood + ":t1", s, warm, False),
                compare=False,
            ),
            Row(
                "redis",
                "sync PubSub thread, from_thread per read batch",
                load,
                "msg/s",
                lambda s: trio.run(redis_thread_subscribe, url, flood + ":tn", s, warm, True),
                compare=False,
            ),
        ]
        measure_rows(section, args.rounds, args.seconds)
        rows += section
    finally:
        with contextlib.suppress(Exception):
            drop_scratch_db(args.database_url, name)
            print(f"dropped scratch database {name}", file=sys.stderr)

    print()
    print(
        f"bridge benchmark: concurrency {c}, {args.seconds:g} s measured per row in {args.rounds}"
        f" interleaved slice(s), {warm:g} s warm-up per slice"
    )
    for line in env:
        print(f"  {line}")
    print(
        f"  loadavg at start {load_at_start}, at end {loadavg()};"
        f" total {time.perf_counter() - started:.0f} s"
    )
    print("  +- = half the range of the slices' rates, relative to their mean")
    print()
    print(render(rows))
    return 0 if all(r.results and not r.errors for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
