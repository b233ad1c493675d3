"""Test helpers: free ports, throwaway redis-server processes, waiting on conditions."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import redis
import trio


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


class RedisServer:
    """A redis-server of our own on a free port, which a test may stop and start again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found")
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    async def wait_ready(self) -> None:
        async def ready() -> bool:
            return await trio.to_thread.run_sync(self.ping)

        await wait_for(ready, what=f"redis-server on port {self.port}")


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
