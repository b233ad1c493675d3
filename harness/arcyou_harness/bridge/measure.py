"""Measuring one slice: closed loops on trio and on asyncio, the measurement window, the
rooms' and users' ids, and the child processes an interrupt must stop."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

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
