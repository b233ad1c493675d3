"""``python -m arcyou_harness.apibench``: the HTTP API over a large database.

Seeds a scratch database (default 1M messages in 1,000 rooms, 10,000 users each in 10 rooms,
one user in 500 rooms), starts ``python -m arcyou_trio.api`` against it and measures, per
request kind: latency one request at a time (p50/p99), then requests/s at saturation
(``--concurrency`` connections for ``--seconds``) with the API process's CPU. Then what the
search indexes cost the send path: the product's send statement, one message per transaction
from ``--send-threads`` threads, with and without the two search indexes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import trio

from arcyou_harness.apibench.client import HttpConnection
from arcyou_harness.apibench.seed import ENGLISH, KOREAN, Shape, room_id, seed, user_id
from arcyou_harness.common import procs
from arcyou_harness.common.stats import ms, rate, summarize
from arcyou_harness.common.system import System, _healthy
from arcyou_trio.devstack.servers import free_port
from arcyou_trio.store import Sent
from arcyou_trio.store.send import NewMessage, send_messages

TARGETS_MS = {"history": 10.0, "rooms_500": 20.0, "search_en": 100.0, "search_ko": 100.0}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m arcyou_harness.apibench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="100k messages, short phases")
    p.add_argument("--database-url", help="PostgreSQL server to use (a scratch database)")
    p.add_argument("--requests", type=int, help="sequential requests per kind (1000)")
    p.add_argument("--seconds", type=float, help="saturation seconds per kind (10)")
    p.add_argument("--concurrency", type=int, default=16, help="saturation connections (16)")
    p.add_argument("--send-threads", type=int, default=4, help="send-cost threads (4)")
    p.add_argument("--sends", type=int, help="send-cost messages per variant (4000)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--seed", type=int, default=1, help="random seed of the request mix")
    return p


Request = Callable[[random.Random], tuple[str, str]]


def kinds(shape: Shape) -> dict[str, Request]:
    """Each request kind: a function of a random source giving (path, token)."""
    heavy = str(user_id(0))
    common_en = list(ENGLISH[:40])

    def typical(rng: random.Random) -> tuple[int, str]:
        k = rng.randrange(1, shape.users)
        return k, str(user_id(k))

    def history(rng: random.Random) -> tuple[str, str]:
        k, token = typical(rng)
        room = room_id((k * 7 + rng.randrange(shape.rooms_per_user) * 101) % shape.rooms)
        if rng.random() < 0.5:
            return f"/v1/rooms/{room}/messages?limit=50", token
        before = rng.randrange(51, shape.per_room + 1)
        return f"/v1/rooms/{room}/messages?limit=50&before_seq={before}", token

    def rooms_500(rng: random.Random) -> tuple[str, str]:
        return "/v1/rooms?limit=50", heavy

    def search(words: list[str], who: str) -> Request:
        def make(rng: random.Random) -> tuple[str, str]:
            token = heavy if who == "heavy" else typical(rng)[1]
            q = urlquote(rng.choice(words))
            return f"/v1/search/messages?q={q}&limit=20", token

        return make

    return {
        "history": history,
        "rooms_500": rooms_500,
        "search_en": search(common_en, "typical"),
        "search_ko": search(list(KOREAN), "typical"),
        "search_en_heavy": search(common_en, "heavy"),
        "search_ko_heavy": search(list(KOREAN), "heavy"),
    }


def urlquote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


async def sequential(port: int, make: Request, count: int, rng: random.Random) -> list[float]:
    conn = await HttpConnection.open("127.0.0.1", port)
    latencies = []
    try:
        for _ in range(count):
            path, token = make(rng)
            status, body, took = await conn.get(path, token)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
            latencies.append(took * 1000)
    finally:
        await conn.aclose()
    return latencies


async def saturate(
    port: int, make: Request, seconds: float, concurrency: int, seed_value: int
) -> tuple[int, list[float]]:
    done = 0
    latencies: list[float] = []

    async def one(worker: int) -> None:
        nonlocal done
        rng = random.Random(seed_value * 1000 + worker)
        conn = await HttpConnection.open("127.0.0.1", port)
        try:
            while True:
                path, token = make(rng)
                status, body, took = await conn.get(path, token)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
                done += 1
                latencies.append(took * 1000)
        finally:
            await conn.aclose()

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for worker in range(concurrency):
                nursery.start_soon(one, worker)
    return done, latencies


def send_cost(database_url: str, shape: Shape, threads: int, sends: int) -> dict[str, Any]:
    """The send statement's rate with and without the search indexes."""
    results: dict[str, Any] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        definitions = [
            (name, definition)
            for name, definition in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE"
                " 'arcyou_chat_messages_text_%%_idx'"
            ).fetchall()
        ]
    variants = [
        ("with_search_indexes", False),
        ("without_search_indexes", True),
        ("with_again", False),
    ]
    for label, drop in variants:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for name, definition in definitions:
                if drop:
                    conn.execute(f"DROP INDEX IF EXISTS {name}")
                elif not conn.execute(
                    "SELECT 1 FROM pg_indexes WHERE indexname = %s", (name,)
                ).fetchone():
                    conn.execute(definition)
        latencies: list[float] = []
        lock = threading.Lock()

        def worker(n: int, latencies: list[float] = latencies, lock: threading.Lock = lock) -> None:
            rng = random.Random(n)
            with psycopg.connect(database_url, autocommit=True) as conn:
                for i in range(sends // threads):
                    k = rng.randrange(shape.users)
                    room = room_id(
                        (k * 7 + rng.randrange(shape.rooms_per_user) * 101) % shape.rooms
                    )
                    words = " ".join(rng.choice(ENGLISH) for _ in range(6))
                    item = NewMessage(room, user_id(k), "text", {"text": f"{words} {i}"})
                    start = time.perf_counter()
                    [result] = send_messages(conn, [item])
                    took = (time.perf_counter() - start) * 1000
                    if not isinstance(result, Sent):
                        raise RuntimeError(f"a benchmark send was refused: {result}")
                    with lock:
                        latencies.append(took)

        start = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.perf_counter() - start
        results[label] = {"tx_per_s": len(latencies) / wall, **summarize(latencies)}
    return results


async def measure(args: argparse.Namespace, port: int, pid: int, shape: Shape) -> dict[str, Any]:
    out: dict[str, Any] = {}
    requests = args.requests or (200 if args.quick else 1000)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    for name, make in kinds(shape).items():
        rng = random.Random(args.seed)
        await sequential(port, make, 20, rng)  # warm the API and the caches
        latencies = await sequential(port, make, requests, rng)
        cpu_before = procs.cpu_seconds(pid) or 0.0
        start = time.perf_counter()
        done, loaded = await saturate(port, make, seconds, args.concurrency, args.seed)
        wall = time.perf_counter() - start
        cpu = ((procs.cpu_seconds(pid) or 0.0) - cpu_before) / wall
        out[name] = {
            "one_at_a_time": summarize(latencies),
            "saturation": {
                "requests_per_s": done / wall,
                "api_cpu_cores": cpu,
                "concurrency": args.concurrency,
                **summarize(loaded),
            },
        }
        one = out[name]["one_at_a_time"]
        print(
            f"  {name:16} one at a time p50 {ms(one['p50'])}, p99 {ms(one['p99'])}; "
            f"saturation {rate(done / wall)} req/s (p99 {ms(out[name]['saturation']['p99'])}),"
            f" API CPU {cpu:.2f} cores",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    shape = (
        Shape(rooms=200, per_room=500, users=2000, rooms_per_user=10, heavy_rooms=100)
        if args.quick
        else Shape()
    )
    run_dir = Path(tempfile.mkdtemp(prefix="arcyou-apibench-"))
    system = System(run_dir, {})
    results: dict[str, Any] = {}
    try:
        system.start_servers(args.database_url, None)
        print(f"seeding {shape.messages:,} messages in {shape.rooms:,} rooms ...", flush=True)
        results["shape"] = {
            "rooms": shape.rooms,
            "messages": shape.messages,
            "users": shape.users,
            "rooms_per_user": shape.rooms_per_user,
            "heavy_user_rooms": shape.heavy_rooms,
        }
        results["seed_s"] = seed(system.database_url, shape)
        print(f"  seeded: {results['seed_s']}", flush=True)
        port = free_port()
        api = system.spawn_service("api", "api", None, API_PORT=str(port))
        deadline = time.monotonic() + 30
        while not _healthy(port):
            if api.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start:\n{api.log_tail()}")
            time.sleep(0.05)
        results["machine"] = procs.machine_info()
        print("requests (dev-mode tokens):", flush=True)
        results["requests"] = trio.run(measure, args, port, api.pid, shape)
        sends = args.sends or (1000 if args.quick else 4000)
        print(f"send statement, {sends} single-message transactions per variant:", flush=True)
        results["send_cost"] = send_cost(system.database_url, shape, args.send_threads, sends)
        for label, figures in results["send_cost"].items():
            print(
                f"  {label:24} {rate(figures['tx_per_s'])} tx/s, p50 {ms(figures['p50'])},"
                f" p99 {ms(figures['p99'])}",
                flush=True,
            )
        verdicts = {
            name: results["requests"][name]["one_at_a_time"]["p99"] <= target
            for name, target in TARGETS_MS.items()
        }
        results["targets_ms"] = TARGETS_MS
        results["met"] = verdicts
        print(
            "targets (p99, one at a time): "
            + ", ".join(f"{n} {'met' if ok else 'MISSED'}" for n, ok in verdicts.items())
        )
    finally:
        system.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
