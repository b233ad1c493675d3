"""The rows of each section (database loads, publish batches, the subscribe flood), each a
function measuring one slice, and the plain-asyncio child process the reference rows run in."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import trio

from arcyou_harness.bridge.db import (
    aio_send_loop,
    checked,
    db_async_per_call,
    db_async_whole_loop,
    db_pgbench,
    db_store,
)
from arcyou_harness.bridge.measure import Result, run_child
from arcyou_harness.bridge.pubsub import (
    aio_publish_loop,
    redis_benchmark,
    redis_bus_publish,
    redis_bus_subscribe,
    redis_sync_publish,
    redis_thread_subscribe,
)
from arcyou_harness.bridge.report import Row

#: The asyncio loops a child process may run, by name.
ASYNCIO_LOOPS: dict[str, Callable[..., Coroutine[Any, Any, Result]]] = {
    f.__name__: f for f in (aio_send_loop, aio_publish_loop)
}


def plain_asyncio(fn: Callable[..., Awaitable[Result]], **kwargs: Any) -> Result:
    """Run ``fn(**kwargs)`` on a stock asyncio loop in a child process (no trio there)."""
    spec = {"fn": fn.__name__, "kwargs": kwargs}
    done = run_child(
        [sys.executable, "-m", "arcyou_harness.bridge", "--child-plain-asyncio", json.dumps(spec)],
        timeout=kwargs["seconds"] + kwargs["warmup"] + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"plain asyncio child failed: {done.stderr.strip()[-2000:]}")
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


def plain_asyncio_child(spec_json: str) -> None:
    """The child's side: run the named asyncio loop, print its :class:`Result` as JSON."""
    spec = json.loads(spec_json)
    result: Result = asyncio.run(ASYNCIO_LOOPS[spec["fn"]](**spec["kwargs"]))
    print(json.dumps(dataclasses.asdict(result)))


def on_trio(fn: Callable[..., Awaitable[Result]], **kwargs: Any) -> Callable[[float], Result]:
    """A slice of ``seconds``: ``fn(seconds=seconds, **kwargs)`` in a fresh ``trio.run``."""
    return lambda seconds: trio.run(functools.partial(fn, seconds=seconds, **kwargs))


def on_asyncio(fn: Callable[..., Awaitable[Result]], **kwargs: Any) -> Callable[[float], Result]:
    """A slice of ``seconds``: ``fn(seconds=seconds, **kwargs)`` in a plain asyncio child."""
    return lambda seconds: plain_asyncio(fn, seconds=seconds, **kwargs)


def db_rows(conninfo: str, load: str, c: int, warm: float, pgbench: str | None) -> list[Row]:
    """The database rows of one load (pgbench first, as the ceiling, when there is one)."""
    common: dict[str, Any] = {"conninfo": conninfo, "load": load, "concurrency": c, "warmup": warm}
    db: list[tuple[str, Callable[[float], Result], bool]] = [
        ("store: sync psycopg pool via trio threads", on_trio(db_store, **common), False),
        (
            "psycopg async pool via trio-asyncio, aio_as_trio per call",
            on_trio(db_async_per_call, **common),
            False,
        ),
        (
            "psycopg async pool via trio-asyncio, whole loop in asyncio",
            on_trio(db_async_whole_loop, **common),
            False,
        ),
        (
            "psycopg async pool, plain asyncio (no trio; reference)",
            on_asyncio(aio_send_loop, **common),
            False,
        ),
    ]
    if pgbench:
        ceiling = functools.partial(db_pgbench, pgbench, conninfo, load, c)
        db.insert(0, (f"pgbench -M prepared -c {c} -j {min(2, c)} (C, libpq)", ceiling, True))
    return [
        Row("db", bridge, load, "tx/s", checked(conninfo, fn), is_ceiling)
        for bridge, fn, is_ceiling in db
    ]


def publish_rows(url: str, batch: int, c: int, warm: float, rb: str | None) -> list[Row]:
    """The Redis publish rows for one batch size (redis-benchmark first, when there is one)."""
    load = f"batch {batch}"
    channel = f"bench:bridge:{os.getpid()}:publish"
    common: dict[str, Any] = {
        "url": url,
        "channel": channel,
        "batch": batch,
        "concurrency": c,
        "warmup": warm,
    }
    rows = []
    if rb:
        requests = 200_000 if batch == 1 else 2_000_000

        def ceiling(_seconds: float) -> Result:  # redis-benchmark counts requests, not time
            return redis_benchmark(rb, url, channel, batch, c, requests)

        rows.append(
            Row(
                "redis",
                f"redis-benchmark PUBLISH -c {c} -P {batch} (C)",
                load,
                "msg/s",
                ceiling,
                is_ceiling=True,
            )
        )
    return [
        *rows,
        Row(
            "redis",
            "bus: Bus.publish_many (sync pipeline on trio threads)",
            load,
            "msg/s",
            on_trio(redis_bus_publish, **common),
        ),
        Row(
            "redis",
            "sync redis pipeline via trio threads",
            load,
            "msg/s",
            on_trio(redis_sync_publish, **common),
        ),
        Row(
            "redis",
            "redis.asyncio, plain asyncio (no trio; reference)",
            load,
            "msg/s",
            on_asyncio(aio_publish_loop, **common),
        ),
    ]


def subscribe_rows(url: str, warm: float) -> list[Row]:
    """The subscribe rows: one channel flooded by another process."""
    flood = f"bench:bridge:{os.getpid()}:flood"
    load = "1 channel flood"
    return [
        Row(
            "redis",
            "subscriber: Bus Subscriber.messages() (reader thread)",
            load,
            "msg/s",
            on_trio(redis_bus_subscribe, url=url, channel=flood + ":bus", warmup=warm),
            compare=False,
        ),
        Row(
            "redis",
            "sync PubSub thread, from_thread per message",
            load,
            "msg/s",
            on_trio(
                redis_thread_subscribe, url=url, channel=flood + ":t1", warmup=warm, batched=False
            ),
            compare=False,
        ),
        Row(
            "redis",
            "sync PubSub thread, from_thread per read batch",
            load,
            "msg/s",
            on_trio(
                redis_thread_subscribe, url=url, channel=flood + ":tn", warmup=warm, batched=True
            ),
            compare=False,
        ),
    ]
