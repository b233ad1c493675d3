"""The command line: arguments, throwaway servers, the fuzzer's rooms, and the exit code.

:func:`main` parses the arguments, starts throwaway PostgreSQL and Redis unless URLs are given
(:func:`local_servers`; given URLs must point at this machine), creates the rooms to fuzz
(:func:`create_rooms`), runs the fuzzer and prints the report.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import trio

import arcyou_harness.fuzz
from arcyou_harness.fuzz.driver import run
from arcyou_harness.fuzz.frames import Ids
from arcyou_harness.fuzz.report import CapturedLogs, Report, print_report
from arcyou_trio.config import Settings
from arcyou_trio.devstack import LocalPostgres, LocalRedis
from arcyou_trio.store import apply_migrations
from arcyou_trio.store.rooms import create_room


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname
    if host is None or host == "localhost" or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def local_servers(database_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    """The URLs to use: the given ones, or throwaway servers in a temporary directory."""
    with ExitStack() as stack:
        tmp: Path | None = None
        if database_url is None or redis_url is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="arcyou-fuzz-")))
        if database_url is None:
            assert tmp is not None
            pg = LocalPostgres(tmp / "postgres")
            pg.start()
            stack.callback(pg.stop)
            database_url = pg.create_database("arcyou_fuzz")
        if redis_url is None:
            assert tmp is not None
            redis = LocalRedis(tmp / "redis")
            redis.start()
            stack.callback(redis.stop)
            redis_url = redis.url
        yield database_url, redis_url


def create_rooms(database_url: str, connections: int) -> Ids:
    users = [str(uuid.uuid4()) for _ in range(connections)]
    stranger, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn:

        def room(name: str, members: Sequence[str]) -> str:
            people = [(uuid.UUID(user), "participant") for user in members]
            return str(create_room(conn, name, people))

        layout = {"fuzz-all": users, "fuzz-all-2": users, "fuzz-half": users[::2]}
        rooms = {room(name, members): members for name, members in layout.items()}
        home = room("fuzz-bystander", [bystander])
    members = {u: {r for r, m in rooms.items() if u in m} for u in users}
    members[stranger] = set()
    members[bystander] = {home}
    return Ids(
        rooms=list(rooms),
        bystander_room=home,
        ghost_room=str(uuid.uuid4()),
        users=users,
        stranger=stranger,
        members=members,
    )


def fuzz_settings(database_url: str, redis_url: str) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "HOST": "127.0.0.1",
            "PORT": "0",
            "JWT_PUBLIC_KEY": "dev-placeholder",
            "RL_BUCKET_CAPACITY": "1000000000",
            "OUTBOX_POLL_MS": "50",
            "WORKER_ID": f"fuzz-{uuid.uuid4().hex[:6]}",
            "REDIS_CHANNEL_PREFIX": f"fuzz-{uuid.uuid4().hex[:8]}:",
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m arcyou_harness.fuzz",
        description=(arcyou_harness.fuzz.__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--frames", type=int, default=100_000, help="frames to send in all")
    parser.add_argument("--connections", type=int, default=8, help="concurrent fuzzing connections")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--database-url", help="PostgreSQL on this machine (default: a throwaway one)"
    )
    parser.add_argument("--redis-url", help="Redis on this machine (default: a throwaway one)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop sending after this")
    parser.add_argument(
        "--bystander-timeout",
        type=float,
        default=5.0,
        help="bound on the bystander's own events (s)",
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(2**32)
    for name in ("database_url", "redis_url"):
        url = getattr(args, name)
        if url is not None and not _is_local(url):
            parser.error(f"--{name.replace('_', '-')} must point at this machine (127.0.0.1)")
    if args.connections < 1 or args.frames < 0:
        parser.error("--connections must be >= 1 and --frames >= 0")

    logs = CapturedLogs()
    root = logging.getLogger()
    root.addHandler(logs)
    if root.getEffectiveLevel() > logging.WARNING:
        root.setLevel(logging.WARNING)
    started = time.monotonic()
    with local_servers(args.database_url, args.redis_url) as (database_url, redis_url):
        apply_migrations(database_url)
        settings = fuzz_settings(database_url, redis_url)
        ids = create_rooms(database_url, args.connections)
        report = Report()
        sys.stdout.write(
            f"fuzzing with {args.frames} frames over {args.connections} connections"
            f" (seed {args.seed})\n"
        )
        sys.stdout.flush()
        rows = trio.run(run, args, settings, ids, report)
    ok = print_report(report, rows, logs, time.monotonic() - started, args.seed)
    return 0 if ok else 1
