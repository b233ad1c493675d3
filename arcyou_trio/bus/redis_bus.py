"""The trio face of Redis Pub/Sub: publish (worker) and subscribe (gateway).

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

**Subscribe** uses one Pub/Sub connection per :class:`Subscriber`, owned by a daemon reader thread
that lives exactly as long as the ``Bus.subscriber()`` context. redis-py's ``PubSub`` is not
thread-safe, so only that thread touches it: ``subscribe``/``unsubscribe`` are requests it takes
from a queue between reads (a socketpair wakes it at once), and it answers them when Redis's
confirmation arrives. Each time the socket is readable the thread reads every complete message
available and appends the whole batch to an in-memory inbox, waking trio with one
``run_sync_soon``; it never waits for trio. If trio falls more than ``max_buffered`` messages
behind, the thread drops the Redis connection rather than let Redis (or this process) buffer
without bound: ``batches()`` delivers what was read, then raises :class:`BusUnavailable`, and the
next call reconnects, as after any broken connection. On the trio side ``batches()`` yields each
batch as the thread read it (the gateway fans a whole batch out, then lets its writers run).

Reconnection is ours, not redis-py's: the Pub/Sub connection has no retries
(``supported_errors=()``), because redis-py's retry silently reconnects and re-subscribes on *any*
read error -- including the ``TimeoutError`` that ``get_message(timeout=0)`` raises when only part
of a message has arrived, which loses that message without a trace. So the thread reads only when
data is there (``can_read(0)``) and then reads each message with a real timeout.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal, TypeVar

import attrs
import redis
import redis.exceptions
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from arcyou_trio.config import PubSubMode
from arcyou_trio.errors import BusError, BusUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

GLOBAL_CHANNEL = "chat:message"

#: Threads that may publish at once (and stay stuck on a dead Redis at most).
PUBLISH_THREADS = 8
#: Most messages the reader thread reads before handing a batch to trio.
READ_BATCH = 512
#: Messages read but not yet taken by ``batches()`` before the subscription is dropped.
DEFAULT_MAX_BUFFERED = 50_000
#: How long an idle reader thread sleeps between looks at its stop flag (it is woken anyway).
_IDLE_POLL_MS = 1000

_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_REDIS_ERRORS = (redis.exceptions.RedisError, OSError)

_THREAD_NAME = "arcyou-redis-subscriber"


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


def _translate(exc: BaseException) -> BusError:
    error: BusError
    if isinstance(exc, BusError):
        return exc
    if isinstance(exc, _UNAVAILABLE):
        error = BusUnavailable(f"redis unavailable: {exc}")
    else:
        error = BusError(f"redis error: {exc}")
    error.__cause__ = exc
    return error


def _close_client(client: redis.Redis) -> None:
    try:
        client.close()
    except _REDIS_ERRORS:
        log.debug("closing a redis client failed", exc_info=True)


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
                await trio.to_thread.run_sync(_close_client, client, abandon_on_cancel=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await trio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=self._limiter)
        except _UNAVAILABLE as exc:
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
        # No retries on this connection: the reader thread owns reconnection (module docstring).
        client = redis.Redis.from_url(
            self._url,
            socket_connect_timeout=self._timeout_s,
            socket_timeout=self._timeout_s,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0, supported_errors=()),
        )
        subscriber = Subscriber(
            client,
            token=trio.lowlevel.current_trio_token(),
            timeout_s=self._timeout_s,
            max_buffered=max_buffered,
        )
        subscriber._start()
        try:
            yield subscriber
        finally:
            await subscriber._close()


@attrs.define(eq=False)
class _Request:
    """A subscribe/unsubscribe/reconnect asked by trio and answered by the reader thread."""

    kind: Literal["subscribe", "unsubscribe", "reconnect"]
    channel: str = ""
    done: trio.Event = attrs.Factory(trio.Event)
    error: BusError | None = None
    newly: bool = False  # the channel was not wanted before this subscribe


@attrs.frozen
class _Broken:
    """Inbox marker: the connection broke here; ``messages()`` raises ``error``."""

    error: BusError


_Batch = list[tuple[str, str]]
_Expected = tuple[Literal["subscribe", "unsubscribe"], _Request | None]


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
        self._client = client
        self._pubsub = client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]
        self._token = token
        self._timeout_s = timeout_s
        self._max_buffered = max_buffered
        self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # trio side only
        self._channels: set[str] = set()
        self._ready: deque[tuple[str, str]] = deque()  # left over by messages()
        self._arrived = trio.Event()
        # shared, under _lock
        self._lock = threading.Lock()
        self._commands: deque[_Request] = deque()
        self._inbox: deque[_Batch | _Broken] = deque()
        self._queued = 0
        self._trio_waiting = False
        self._closing = False
        self._dead = False
        # reader thread only
        self._wanted: set[str] = set()  # channels to (re)subscribe
        self._confirmed: set[str] = set()  # wanted and confirmed on the current connection
        self._expect: dict[str, deque[_Expected]] = {}  # confirmations due, in order sent
        self._broken = False

    # -- trio side ----------------------------------------------------------------------

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        await self._call(_Request("subscribe", channel))

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        await self._call(_Request("unsubscribe", channel))

    async def reconnect(self) -> None:
        """Make sure the connection is up and every channel subscribed again (Redis confirmed);
        raises :class:`BusUnavailable` if Redis is down."""
        await self._call(_Request("reconnect"))

    async def batches(self) -> AsyncIterator[list[tuple[str, str]]]:
        """Yield ``(channel, data)`` lists, in arrival order, as the reader thread read them.

        Raises :class:`BusUnavailable` once the connection broke (after everything read before
        the break was yielded); calling it again reconnects and re-subscribes.
        """
        await self._call(_Request("reconnect"))  # a no-op unless the connection is broken
        while True:
            yield await self._next_batch()
            # Let the tasks the batch woke (the connections' writers) run before the next.
            await trio.lowlevel.checkpoint()

    async def messages(self) -> AsyncIterator[tuple[str, str]]:
        """:meth:`batches`, one message at a time."""
        await self._call(_Request("reconnect"))
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
            item = self._take()
            if item is None:
                await self._arrived.wait()
                continue
            if isinstance(item, _Broken):
                raise item.error
            channels = self._channels
            batch = [entry for entry in item if entry[0] in channels]  # unsubscribed meanwhile
            if batch:
                return batch

    def _take(self) -> _Batch | _Broken | None:
        with self._lock:
            if self._inbox:
                item = self._inbox.popleft()
                if not isinstance(item, _Broken):
                    self._queued -= len(item)
                return item
            self._trio_waiting = True
            self._arrived = trio.Event()
            return None

    async def _call(self, request: _Request) -> None:
        with self._lock:
            if self._closing or self._dead:
                raise BusUnavailable("redis subscriber is closed")
            self._commands.append(request)
        self._wake_thread()
        await request.done.wait()
        if request.error is not None:
            raise request.error

    def _wake_thread(self) -> None:
        with suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self._wake_w.send(b"\0")

    def _start(self) -> None:
        self._thread.start()

    async def _close(self) -> None:
        with self._lock:
            self._closing = True
        self._wake_thread()
        # The thread only ever blocks for a bounded time (a connect, or the rest of a message).
        with trio.CancelScope(shield=True), trio.move_on_after(2 * self._timeout_s + 1):
            await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)
        if self._thread.is_alive():
            log.warning("redis subscriber thread still busy at close; it exits on its own")
        self._wake_w.close()

    def _finish(self, request: _Request) -> None:
        # Runs in trio's thread (run_sync_soon), even if the caller was cancelled meanwhile.
        if request.error is not None and request.kind == "subscribe" and request.newly:
            self._channels.discard(request.channel)
        request.done.set()

    def _wake_trio(self) -> None:
        self._arrived.set()

    # -- reader thread ------------------------------------------------------------------

    def _to_trio(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            self._closing = True

    def _complete(self, request: _Request, error: BusError | None = None) -> None:
        request.error = error
        self._to_trio(self._finish, request)

    def _post(self, item: _Batch | _Broken) -> int:
        with self._lock:
            self._inbox.append(item)
            if not isinstance(item, _Broken):
                self._queued += len(item)
            queued = self._queued
            wake, self._trio_waiting = self._trio_waiting, False
        if wake:
            self._to_trio(self._wake_trio)
        return queued

    def _run(self) -> None:
        try:
            while not self._closing:
                self._run_commands()
                if self._closing:
                    break
                if self._pubsub.connection is not None:
                    try:
                        if self._read_available():
                            continue  # a full batch: there is probably more
                    except _REDIS_ERRORS as exc:
                        self._break(exc)
                        continue
                self._wait()
        except BaseException as exc:
            log.exception("redis subscriber thread failed")
            self._post(_Broken(BusError(f"redis subscriber failed: {exc!r}")))
        finally:
            self._shutdown()

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                request = self._commands.popleft()
            if request.kind == "subscribe":
                self._do_subscribe(request)
            elif request.kind == "unsubscribe":
                self._do_unsubscribe(request)
            else:
                self._do_reconnect(request)

    def _expect_reply(self, channel: str, entry: _Expected) -> None:
        self._expect.setdefault(channel, deque()).append(entry)

    def _do_subscribe(self, request: _Request) -> None:
        channel = request.channel
        if not self._broken and channel in self._confirmed:
            self._complete(request)
            return
        request.newly = channel not in self._wanted
        self._wanted.add(channel)
        if not self._broken:
            had_connection = self._pubsub.connection is not None
            try:
                self._pubsub.subscribe(channel)  # connects first if there is no connection
            except _REDIS_ERRORS as exc:
                if request.newly:
                    self._wanted.discard(channel)
                self._break(exc)
                if not had_connection:  # could not even connect: Redis is down
                    self._complete(request, _translate(exc))
                    return
                # The connection died while idle: try a fresh one below.
                self._wanted.add(channel)
            else:
                self._expect_reply(channel, ("subscribe", request))
                return
        try:
            self._reconnect(request)
        except _REDIS_ERRORS as exc:
            if request.newly:
                self._wanted.discard(channel)
            self._complete(request, _translate(exc))

    def _do_unsubscribe(self, request: _Request) -> None:
        channel = request.channel
        was_wanted = channel in self._wanted
        self._wanted.discard(channel)
        self._confirmed.discard(channel)
        if not was_wanted or self._broken or self._pubsub.connection is None:
            self._complete(request)  # not subscribed on any live connection
            return
        try:
            self._pubsub.unsubscribe(channel)
        except _REDIS_ERRORS as exc:
            self._break(exc)  # and with it every subscription of this connection
            self._complete(request)
            return
        self._expect_reply(channel, ("unsubscribe", request))

    def _do_reconnect(self, request: _Request) -> None:
        if not self._broken:
            self._complete(request)
            return
        try:
            self._reconnect(None)
        except _REDIS_ERRORS as exc:
            self._complete(request, _translate(exc))
        else:
            self._complete(request)

    def _reconnect(self, request: _Request | None) -> None:
        """A fresh connection subscribed to every wanted channel (raises if Redis is down)."""
        self._pubsub.reset()
        self._confirmed.clear()
        self._expect.clear()
        if self._wanted:
            channels = sorted(self._wanted)
            try:
                self._pubsub.subscribe(*channels)
            except BaseException:
                self._pubsub.reset()
                raise
            for channel in channels:
                mine = request if request is not None and request.channel == channel else None
                self._expect_reply(channel, ("subscribe", mine))
            log.info("redis subscription restored (%d channels)", len(channels))
        self._broken = False

    def _break(self, exc: BaseException) -> None:
        """Drop the connection; fail what waits on it; tell ``messages()`` if anything was lost."""
        error = _translate(exc)
        had_connection = self._pubsub.connection is not None
        try:
            self._pubsub.reset()
        except _REDIS_ERRORS:
            log.debug("closing the broken pub/sub connection failed", exc_info=True)
        self._broken = True
        self._confirmed.clear()
        expect, self._expect = self._expect, {}
        for channel, entries in expect.items():
            for kind, request in entries:
                if request is None:
                    continue
                if kind == "subscribe":
                    if request.newly:
                        self._wanted.discard(channel)
                    self._complete(request, type(error)(str(error)))
                else:
                    self._complete(request)
        if had_connection and self._wanted:
            log.warning("redis subscription lost: %s", error)
            self._post(_Broken(error))

    def _read_available(self) -> bool:
        """Read every complete message available and hand them over as one batch.

        Returns True when the batch was full (more is probably waiting).
        """
        pubsub = self._pubsub
        conn = pubsub.connection
        assert conn is not None
        batch: _Batch = []
        # can_read(0) first: get_message() may then block, but only until the rest of a message
        # that has started to arrive is in (bounded by the timeout).
        while len(batch) < READ_BATCH and pubsub.subscribed and conn.can_read(timeout=0):
            message = pubsub.get_message(timeout=self._timeout_s)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                channel = _text(message["channel"])
                if channel in self._wanted:
                    batch.append((channel, _text(message["data"])))
            elif kind in ("subscribe", "unsubscribe"):
                self._confirmation(kind, _text(message["channel"]))
        if batch:
            queued = self._post(batch)
            if queued > self._max_buffered:
                log.warning(
                    "redis subscriber fell behind (%d messages not taken); dropping the "
                    "subscription, the gateway resubscribes and clients fill the gap",
                    queued,
                )
                self._break(
                    BusUnavailable(f"subscriber fell behind: {queued} messages not yet taken")
                )
                return False
        if not pubsub.subscribed:
            # No subscription left: close the idle connection (the next subscribe opens one).
            if self._expect:
                self._break(BusUnavailable("pub/sub connection lost its subscriptions"))
            else:
                pubsub.reset()
        return len(batch) >= READ_BATCH

    def _confirmation(self, kind: str, channel: str) -> None:
        entries = self._expect.get(channel)
        if not entries:
            log.debug("unexpected %s confirmation for %s", kind, channel)
            return
        expected, request = entries.popleft()
        if not entries:
            del self._expect[channel]
            # Confirmed only when the last command sent for it was this SUBSCRIBE.
            if kind == "subscribe" and channel in self._wanted:
                self._confirmed.add(channel)
        if expected != kind:
            log.debug("expected %s, got %s confirmation for %s", expected, kind, channel)
        if request is not None:
            self._complete(request)

    def _wait(self) -> None:
        """Sleep until Redis sends something or trio asks for something."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        timeout_ms = _IDLE_POLL_MS
        conn = self._pubsub.connection
        if conn is not None:
            sock = getattr(conn, "_sock", None)
            if isinstance(sock, socket.socket):
                poller.register(sock, select.POLLIN)
            else:  # not a redis-py we know: poll the connection instead
                timeout_ms = 20
        poller.poll(timeout_ms)
        with suppress(OSError):  # BlockingIOError: drained
            while self._wake_r.recv(4096):
                pass

    def _shutdown(self) -> None:
        with self._lock:
            self._dead = True
            pending = list(self._commands)
            self._commands.clear()
        for request in pending:
            self._complete(request, BusUnavailable("redis subscriber is closed"))
        for entries in self._expect.values():
            for _kind, waiting in entries:
                if waiting is not None:
                    self._complete(waiting, BusUnavailable("redis subscriber is closed"))
        self._expect.clear()
        self._post(_Broken(BusUnavailable("redis subscriber is closed")))
        try:
            self._pubsub.reset()
        except _REDIS_ERRORS:
            log.debug("closing the pub/sub connection failed", exc_info=True)
        _close_client(self._client)
        self._wake_r.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
