"""The Redis rows: publishing through our bus, a sync pipeline on trio threads, plain asyncio and
redis-benchmark (the ceiling); receiving a flood through our subscriber and sync reader threads."""

from __future__ import annotations

import ctypes
import multiprocessing
import random
import resource
import socket
import threading
import time
from typing import Any

import redis
import redis.asyncio as aredis
import trio
from redis.connection import parse_url

from arcyou_harness.bridge.measure import (
    CHILDREN,
    PAYLOAD,
    Result,
    aio_closed_loop,
    run_child,
    trio_closed_loop,
)
from arcyou_harness.common.ceilings import parse_redis_benchmark_csv, redis_benchmark_command
from arcyou_trio.bus import Bus

FLOOD_WINDOW = 10_000  # messages the flood publisher may be ahead of the subscriber
FLOOD_BATCH = 256


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
    parts: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
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


async def flood_rate(url: str, channel: str, counter: Any, seconds: float, warmup: float) -> Result:
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
