"""What a subscriber's trio side and its reader thread share, and how each wakes the other.

Under one lock: the requests trio makes of the thread (subscribe, unsubscribe, reconnect) and the
inbox of what the thread read (whole batches, and :class:`Broken` markers) for trio. Neither side
ever waits for the other: trio wakes the thread by writing a byte to a socketpair the thread
polls; the thread wakes trio with one ``run_sync_soon``, and only when trio said it is waiting.
"""

from __future__ import annotations

import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Literal

import attrs
import trio

from arcyou_trio.errors import BusError, BusUnavailable

Batch = list[tuple[str, str]]


@attrs.define(eq=False)
class Request:
    """A subscribe/unsubscribe/reconnect asked by trio and answered by the reader thread."""

    kind: Literal["subscribe", "unsubscribe", "reconnect"]
    channel: str = ""
    done: trio.Event = attrs.Factory(trio.Event)
    error: BusError | None = None
    newly: bool = False  # the channel was not wanted before this subscribe


@attrs.frozen
class Broken:
    """Inbox marker: the connection broke here; ``messages()`` raises ``error``."""

    error: BusError


class Handoff:
    """The shared state of one subscriber; methods say which side calls them."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # trio side only
        self.arrived = trio.Event()  # set when the inbox got something while trio waited
        # shared, under _lock (``closing`` is also read without it, by the thread)
        self._lock = threading.Lock()
        self._commands: deque[Request] = deque()
        self._inbox: deque[Batch | Broken] = deque()
        self._queued = 0
        self._trio_waiting = False
        self.closing = False
        self._dead = False

    # -- trio side ----------------------------------------------------------------------

    def ask(self, request: Request) -> None:
        """Queue ``request`` for the thread and wake it; raises once the subscriber closed."""
        with self._lock:
            if self.closing or self._dead:
                raise BusUnavailable("redis subscriber is closed")
            self._commands.append(request)
        self._wake_thread()

    def take(self) -> Batch | Broken | None:
        """The oldest inbox entry, or None (then :attr:`arrived` is set when one comes)."""
        with self._lock:
            if self._inbox:
                item = self._inbox.popleft()
                if not isinstance(item, Broken):
                    self._queued -= len(item)
                return item
            self._trio_waiting = True
            self.arrived = trio.Event()
            return None

    def stop(self) -> None:
        """Tell the thread to finish (it shuts its connection down and exits)."""
        with self._lock:
            self.closing = True
        self._wake_thread()

    def close_trio_end(self) -> None:
        self._wake_w.close()

    def _wake_thread(self) -> None:
        with suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self._wake_w.send(b"\0")

    def _wake_trio(self) -> None:
        self.arrived.set()

    # -- reader thread ------------------------------------------------------------------

    def to_trio(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` in trio's thread soon; once trio's run is over, stop instead."""
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            self.closing = True

    def post(self, item: Batch | Broken) -> int:
        """Append to the inbox (waking trio if it waits); returns the messages now queued."""
        with self._lock:
            self._inbox.append(item)
            if not isinstance(item, Broken):
                self._queued += len(item)
            queued = self._queued
            wake, self._trio_waiting = self._trio_waiting, False
        if wake:
            self.to_trio(self._wake_trio)
        return queued

    def next_command(self) -> Request | None:
        with self._lock:
            if not self._commands:
                return None
            return self._commands.popleft()

    def shut(self) -> list[Request]:
        """Refuse further requests; returns those not taken yet."""
        with self._lock:
            self._dead = True
            pending = list(self._commands)
            self._commands.clear()
        return pending

    def wait(self, sock: socket.socket | None, timeout_ms: int) -> None:
        """Sleep until ``sock`` is readable, trio wakes the thread, or ``timeout_ms`` passed."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if sock is not None:
            poller.register(sock, select.POLLIN)
        poller.poll(timeout_ms)
        with suppress(OSError):  # BlockingIOError: drained
            while self._wake_r.recv(4096):
                pass

    def close_thread_end(self) -> None:
        self._wake_r.close()
