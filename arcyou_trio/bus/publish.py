"""The :class:`Bus`: the process's Redis client, for publishing (worker) and ping, and the
factory of :class:`~arcyou_trio.bus.subscriber.Subscriber` (gateway).

redis-py's *sync* client, driven from threads (``docs/architecture.md``, "Bridges ... chosen by
measurement": a sync pipeline on a thread publishes 3-4x faster, and a reader thread handing over
whole read batches receives 5-7x faster, than redis.asyncio under trio-asyncio). Redis exceptions
become :class:`~arcyou_trio.errors.BusUnavailable` / :class:`~arcyou_trio.errors.BusError` here.

**Publish** runs a ``pipeline(transaction=False)`` in ``trio.to_thread.run_sync`` with
``abandon_on_cancel=True`` and a :class:`trio.CapacityLimiter`. A cancelled publish returns at
once, but its thread may still finish sending the pipeline: delivery is at-least-once (the outbox
worker retries rows whose publish did not return, so they may go out twice; the gateway's
per-connection ordering by per-room seq drops the repeat). The abandoned thread keeps its limiter
token until its socket call returns (at most ``timeout_s``), so a dead Redis cannot pile up
threads; closing the ``Bus`` shuts their sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import redis
import redis.exceptions
import trio

from arcyou_trio.bus.redis_errors import UNAVAILABLE, close_client
from arcyou_trio.bus.subscriber import DEFAULT_MAX_BUFFERED, Subscriber, open_subscriber
from arcyou_trio.errors import BusError, BusUnavailable

T = TypeVar("T")

#: Threads that may publish at once (and stay stuck on a dead Redis at most).
PUBLISH_THREADS = 8


class Bus:
    """A Redis client for publishing, and a factory of subscribers."""

    def __init__(self, url: str, client: redis.Redis, *, timeout_s: float) -> None:
        self._url = url
        self._client = client
        self._timeout_s = timeout_s
        self._limiter = trio.CapacityLimiter(PUBLISH_THREADS)

    @classmethod
    @asynccontextmanager
    async def open(cls, redis_url: str, *, timeout_s: float = 5.0) -> AsyncIterator[Bus]:
        client = redis.Redis.from_url(
            redis_url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            health_check_interval=0,
        )
        try:
            yield cls(redis_url, client, timeout_s=timeout_s)
        finally:
            # Closing also shuts the sockets of abandoned (cancelled) publishes, so their threads
            # end now instead of after their socket timeout.
            with trio.CancelScope(shield=True), trio.move_on_after(timeout_s):
                await trio.to_thread.run_sync(close_client, client, abandon_on_cancel=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await trio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=self._limiter)
        except UNAVAILABLE as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise BusError(f"redis error: {exc}") from exc

    async def ping(self) -> None:
        await self._run(self._client.ping)

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        """Publish (channel, data) pairs in one pipelined round trip, in order.

        Cancellation returns at once; the pipeline may still go out (at-least-once).
        """
        if not messages:
            return
        batch = list(messages)  # the thread may outlive the caller's list

        def run() -> None:
            with self._client.pipeline(transaction=False) as pipe:
                for channel, data in batch:
                    pipe.publish(channel, data)
                pipe.execute()

        await self._run(run)

    @asynccontextmanager
    async def subscriber(
        self, *, max_buffered: int = DEFAULT_MAX_BUFFERED
    ) -> AsyncIterator[Subscriber]:
        """A Pub/Sub connection of its own, read by a thread that stops when this exits."""
        async with open_subscriber(
            self._url, timeout_s=self._timeout_s, max_buffered=max_buffered
        ) as subscriber:
            yield subscriber
