"""The reader thread of a subscriber: it alone touches the Pub/Sub connection.

redis-py's ``PubSub`` is not thread-safe, so this thread owns it: it takes subscribe/unsubscribe
requests from the :class:`~arcyou_trio.bus.handoff.Handoff` between reads and answers each when
Redis's confirmation arrives. Each time the socket is readable it reads every complete message
available and posts the whole batch to the inbox; it never waits for trio. If trio falls more
than ``max_buffered`` messages behind, the thread drops the Redis connection rather than let Redis
(or this process) buffer without bound; trio then gets what was read, and a :class:`Broken`
marker.

Reconnection is ours, not redis-py's: the Pub/Sub connection has no retries
(``supported_errors=()``), because redis-py's retry silently reconnects and re-subscribes on *any*
read error -- including the ``TimeoutError`` that ``get_message(timeout=0)`` raises when only part
of a message has arrived, which loses that message without a trace. So the thread reads only when
data is there (``can_read(0)``) and then reads each message with a real timeout.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Literal

import redis

from arcyou_trio.bus.handoff import Batch, Broken, Handoff, Request
from arcyou_trio.bus.redis_errors import REDIS_ERRORS, close_client, translate
from arcyou_trio.errors import BusError, BusUnavailable

log = logging.getLogger(__name__)

#: Most messages the reader thread reads before handing a batch to trio.
READ_BATCH = 512
#: How long an idle reader thread sleeps between looks at its stop flag (it is woken anyway).
_IDLE_POLL_MS = 1000

THREAD_NAME = "arcyou-redis-subscriber"

_Expected = tuple[Literal["subscribe", "unsubscribe"], Request | None]


class Reader:
    """The thread and the state only it touches. ``on_done(request)`` runs in trio's thread once
    the request is answered (``request.error`` is set if it failed)."""

    def __init__(
        self,
        client: redis.Redis,
        handoff: Handoff,
        *,
        timeout_s: float,
        max_buffered: int,
        on_done: Callable[[Request], None],
    ) -> None:
        self._client = client
        self._pubsub = client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]
        self._handoff = handoff
        self._timeout_s = timeout_s
        self._max_buffered = max_buffered
        self._on_done = on_done
        self.thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._wanted: set[str] = set()  # channels to (re)subscribe
        self._confirmed: set[str] = set()  # wanted and confirmed on the current connection
        self._expect: dict[str, deque[_Expected]] = {}  # confirmations due, in order sent
        self._broken = False

    def _complete(self, request: Request, error: BusError | None = None) -> None:
        request.error = error
        self._handoff.to_trio(self._on_done, request)

    def _run(self) -> None:
        handoff = self._handoff
        try:
            while not handoff.closing:
                self._run_commands()
                if handoff.closing:
                    break
                if self._pubsub.connection is not None:
                    try:
                        if self._read_available():
                            continue  # a full batch: there is probably more
                    except REDIS_ERRORS as exc:
                        self._break(exc)
                        continue
                self._wait()
        except BaseException as exc:
            log.exception("redis subscriber thread failed")
            handoff.post(Broken(BusError(f"redis subscriber failed: {exc!r}")))
        finally:
            self._shutdown()

    def _run_commands(self) -> None:
        while (request := self._handoff.next_command()) is not None:
            if request.kind == "subscribe":
                self._do_subscribe(request)
            elif request.kind == "unsubscribe":
                self._do_unsubscribe(request)
            else:
                self._do_reconnect(request)

    def _expect_reply(self, channel: str, entry: _Expected) -> None:
        self._expect.setdefault(channel, deque()).append(entry)

    def _do_subscribe(self, request: Request) -> None:
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
            except REDIS_ERRORS as exc:
                if request.newly:
                    self._wanted.discard(channel)
                self._break(exc)
                if not had_connection:  # could not even connect: Redis is down
                    self._complete(request, translate(exc))
                    return
                # The connection died while idle: try a fresh one below.
                self._wanted.add(channel)
            else:
                self._expect_reply(channel, ("subscribe", request))
                return
        try:
            self._reconnect(request)
        except REDIS_ERRORS as exc:
            if request.newly:
                self._wanted.discard(channel)
            self._complete(request, translate(exc))

    def _do_unsubscribe(self, request: Request) -> None:
        channel = request.channel
        was_wanted = channel in self._wanted
        self._wanted.discard(channel)
        self._confirmed.discard(channel)
        if not was_wanted or self._broken or self._pubsub.connection is None:
            self._complete(request)  # not subscribed on any live connection
            return
        try:
            self._pubsub.unsubscribe(channel)
        except REDIS_ERRORS as exc:
            self._break(exc)  # and with it every subscription of this connection
            self._complete(request)
            return
        self._expect_reply(channel, ("unsubscribe", request))

    def _do_reconnect(self, request: Request) -> None:
        if not self._broken:
            self._complete(request)
            return
        try:
            self._reconnect(None)
        except REDIS_ERRORS as exc:
            self._complete(request, translate(exc))
        else:
            self._complete(request)

    def _reconnect(self, request: Request | None) -> None:
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
        error = translate(exc)
        had_connection = self._pubsub.connection is not None
        try:
            self._pubsub.reset()
        except REDIS_ERRORS:
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
            self._handoff.post(Broken(error))

    def _read_available(self) -> bool:
        """Read every complete message available and hand them over as one batch.

        Returns True when the batch was full (more is probably waiting).
        """
        pubsub = self._pubsub
        conn = pubsub.connection
        assert conn is not None
        batch: Batch = []
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
            queued = self._handoff.post(batch)
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
        timeout_ms = _IDLE_POLL_MS
        readable: socket.socket | None = None
        conn = self._pubsub.connection
        if conn is not None:
            sock = getattr(conn, "_sock", None)
            if isinstance(sock, socket.socket):
                readable = sock
            else:  # not a redis-py we know: poll the connection instead
                timeout_ms = 20
        self._handoff.wait(readable, timeout_ms)

    def _shutdown(self) -> None:
        for request in self._handoff.shut():
            self._complete(request, BusUnavailable("redis subscriber is closed"))
        for entries in self._expect.values():
            for _kind, waiting in entries:
                if waiting is not None:
                    self._complete(waiting, BusUnavailable("redis subscriber is closed"))
        self._expect.clear()
        self._handoff.post(Broken(BusUnavailable("redis subscriber is closed")))
        try:
            self._pubsub.reset()
        except REDIS_ERRORS:
            log.debug("closing the pub/sub connection failed", exc_info=True)
        close_client(self._client)
        self._handoff.close_thread_end()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
