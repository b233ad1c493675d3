"""The trio face of Redis Pub/Sub: publish (worker) and subscribe (gateway).

redis-py's asyncio client runs under trio through trio-asyncio: one asyncio loop per
:class:`Bus`, opened and closed with it, and every redis call wrapped by ``aio_as_trio``. This
module is the only place that knows asyncio exists. Redis exceptions become
:class:`~arcyou_trio.errors.BusUnavailable` / :class:`~arcyou_trio.errors.BusError` here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import attrs
import redis.asyncio as aredis
import redis.exceptions
import trio
import trio_asyncio

from arcyou_trio.config import PubSubMode
from arcyou_trio.errors import BusError, BusUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

GLOBAL_CHANNEL = "chat:message"


@attrs.frozen
class Channels:
    """The seed's channel naming (§6): ``chat:message`` for every room, or ``conv:{roomId}``.

    ``prefix`` (``REDIS_CHANNEL_PREFIX``, empty by default) lets several deployments, or test
    runs, share one Redis without hearing each other.
    """

    mode: PubSubMode
    prefix: str = ""

    @property
    def global_channel(self) -> str:
        return f"{self.prefix}{GLOBAL_CHANNEL}"

    def for_room(self, room_id: str) -> str:
        if self.mode is PubSubMode.GLOBAL:
            return self.global_channel
        return f"{self.prefix}conv:{room_id}"


async def _call(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    try:
        return await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)  # type: ignore[no-any-return]
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise BusUnavailable(f"redis unavailable: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise BusError(f"redis error: {exc}") from exc


class Bus:
    """A Redis client for publishing, and a factory of subscribers."""

    def __init__(self, url: str, client: aredis.Redis) -> None:
        self._url = url
        self._client = client

    @classmethod
    @asynccontextmanager
    async def open(cls, redis_url: str, *, timeout_s: float = 5.0) -> AsyncIterator[Bus]:
        async with trio_asyncio.open_loop():
            client = aredis.Redis.from_url(
                redis_url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                health_check_interval=0,
            )
            try:
                yield cls(redis_url, client)
            finally:
                with (
                    trio.CancelScope(shield=True),
                    trio.move_on_after(timeout_s),
                    suppress(redis.exceptions.RedisError, OSError),
                ):
                    await trio_asyncio.aio_as_trio(client.aclose)()

    async def ping(self) -> None:
        await _call(self._client.ping)

    async def publish_many(self, messages: Sequence[tuple[str, str]]) -> None:
        """Publish (channel, data) pairs in one pipelined round trip, in order."""
        if not messages:
            return

        async def run() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, data in messages:
                    pipe.publish(channel, data)
                await pipe.execute()

        await _call(run)

    @asynccontextmanager
    async def subscriber(self) -> AsyncIterator[Subscriber]:
        # Subscriptions get a connection of their own that never times out on reads: a quiet
        # channel is not a broken one.
        client = aredis.Redis.from_url(
            self._url, socket_connect_timeout=5.0, socket_timeout=None, health_check_interval=0
        )
        pubsub = client.pubsub()
        try:
            yield Subscriber(pubsub)
        finally:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(5),
                suppress(redis.exceptions.RedisError, OSError),
            ):
                await trio_asyncio.aio_as_trio(pubsub.aclose)()
                await trio_asyncio.aio_as_trio(client.aclose)()


class Subscriber:
    """One Pub/Sub connection. ``subscribe`` returns once Redis has confirmed it.

    Call :meth:`messages` from exactly one task; it yields ``(channel, data)`` and raises
    :class:`BusUnavailable` when the connection breaks (the caller decides how to recover;
    a later call reconnects and re-subscribes every channel).
    """

    def __init__(self, pubsub: aredis.client.PubSub) -> None:
        self._pubsub = pubsub
        self._confirm: dict[str, trio.Event] = {}
        self._channels: set[str] = set()
        self._has_channels = trio.Event()

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    async def subscribe(self, channel: str) -> None:
        event = self._confirm.setdefault(channel, trio.Event())
        await _call(self._pubsub.subscribe, channel)
        self._channels.add(channel)
        self._has_channels.set()
        await event.wait()

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        self._confirm.pop(channel, None)
        await _call(self._pubsub.unsubscribe, channel)

    async def messages(self) -> AsyncIterator[tuple[str, str]]:
        while True:
            await self._has_channels.wait()
            message = await _call(self._pubsub.get_message, timeout=None)
            if message is None:
                continue
            kind = message["type"]
            channel = _text(message["channel"])
            if kind == "message":
                yield channel, _text(message["data"])
            elif kind == "subscribe":
                event = self._confirm.get(channel)
                if event is not None:
                    event.set()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
