"""The :class:`Subscriber`: trio's side of one Pub/Sub connection (gateway).

Each subscriber has one Pub/Sub connection, owned by a daemon reader thread
(:mod:`arcyou_trio.bus.reader`) that lives exactly as long as the ``Bus.subscriber()`` context.
``subscribe``/``unsubscribe`` are requests the thread takes from a queue between reads (a
socketpair wakes it at once, :mod:`arcyou_trio.bus.handoff`), and it answers them when Redis's
confirmation arrives. The thread appends each batch it read to an in-memory inbox, waking trio
with one ``run_sync_soon``. If trio falls more than ``max_buffered`` messages behind, the thread
drops the Redis connection: ``batches()`` delivers what was read, then raises
:class:`BusUnavailable`, and the next call reconnects, as after any broken connection. On the trio
side ``batches()`` yields each batch as the thread read it (the gateway fans a whole batch out,
then lets its writers run).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from arcyou_trio.bus.handoff import Broken, Handoff, Request
from arcyou_trio.bus.reader import Reader

log = logging.getLogger(__name__)

#: Messages read but not yet taken by ``batches()`` before the subscription is dropped.
DEFAULT_MAX_BUFFERED = 50_000


@asynccontextmanager
async def open_subscriber(
    url: str, *, timeout_s: float, max_buffered: int
) -> AsyncIterator[Subscriber]:
    """A :class:`Subscriber` on a connection of its own; its thread stops when this exits."""
    # No retries on this connection: the reader thread owns reconnection (arcyou_trio.bus.reader).
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 0, supported_errors=()),
    )
    subscriber = Subscriber(
        client,
        token=trio.lowlevel.current_trio_token(),
        timeout_s=timeout_s,
        max_buffered=max_buffered,
    )
    subscriber._start()
    try:
        yield subscriber
    finally:
        await subscriber._close()


class Subscriber:
    """One Pub/Sub connection. ``subscribe`` returns once Redis has confirmed it.

    Call :meth:`messages` from exactly one task; it yields ``(channel, data)`` and raises
    :class:`BusUnavailable` when the connection breaks (the caller decides how to recover;
    a later call reconnects and re-subscribes every channel). ``subscribe`` on a broken
    connection tries one reconnect itself and raises :class:`BusUnavailable` if Redis is down.
    ``unsubscribe`` waits for Redis's confirmation while connected; once it returns no message of
    that channel is yielded any more. Cancelling either call does not withdraw the request.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        token: trio.lowlevel.TrioToken,
        timeout_s: float,
        max_buffered: int,
    ) -> None:
        self._timeout_s = timeout_s
        self._handoff = Handoff(token)
        self._reader = Reader(
            client,
            self._handoff,
            timeout_s=timeout_s,
            max_buffered=max_buffered,
            on_done=self._finish,
        )
        self._channels: set[str] = set()
        self._ready: deque[tuple[str, str]] = deque()  # left over by messages()

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        await self._call(Request("subscribe", channel))

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        await self._call(Request("unsubscribe", channel))

    async def reconnect(self) -> None:
        """Make sure the connection is up and every channel subscribed again (Redis confirmed);
        raises :class:`BusUnavailable` if Redis is down."""
        await self._call(Request("reconnect"))

    async def batches(self) -> AsyncIterator[list[tuple[str, str]]]:
        """Yield ``(channel, data)`` lists, in arrival order, as the reader thread read them.

        Raises :class:`BusUnavailable` once the connection broke (after everything read before
        the break was yielded); calling it again reconnects and re-subscribes.
        """
        await self._call(Request("reconnect"))  # a no-op unless the connection is broken
        while True:
            yield await self._next_batch()
            # Let the tasks the batch woke (the connections' writers) run before the next.
            await trio.lowlevel.checkpoint()

    async def messages(self) -> AsyncIterator[tuple[str, str]]:
        """:meth:`batches`, one message at a time."""
        await self._call(Request("reconnect"))
        while True:
            # What a caller that broke out of the loop left of a batch is kept for the next call.
            while self._ready:
                channel, data = self._ready.popleft()
                if channel in self._channels:  # unsubscribed while this batch was yielded
                    yield channel, data
            self._ready.extend(await self._next_batch())

    async def _next_batch(self) -> list[tuple[str, str]]:
        if self._ready:
            batch = [entry for entry in self._ready if entry[0] in self._channels]
            self._ready.clear()
            if batch:
                return batch
        while True:
            item = self._handoff.take()
            if item is None:
                await self._handoff.arrived.wait()
                continue
            if isinstance(item, Broken):
                raise item.error
            channels = self._channels
            batch = [entry for entry in item if entry[0] in channels]  # unsubscribed meanwhile
            if batch:
                return batch

    async def _call(self, request: Request) -> None:
        self._handoff.ask(request)
        await request.done.wait()
        if request.error is not None:
            raise request.error

    def _start(self) -> None:
        self._reader.thread.start()

    async def _close(self) -> None:
        self._handoff.stop()
        thread = self._reader.thread
        # The thread only ever blocks for a bounded time (a connect, or the rest of a message).
        with trio.CancelScope(shield=True), trio.move_on_after(2 * self._timeout_s + 1):
            await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
        if thread.is_alive():
            log.warning("redis subscriber thread still busy at close; it exits on its own")
        self._handoff.close_trio_end()

    def _finish(self, request: Request) -> None:
        # Runs in trio's thread (run_sync_soon), even if the caller was cancelled meanwhile.
        if request.error is not None and request.kind == "subscribe" and request.newly:
            self._channels.discard(request.channel)
        request.done.set()
