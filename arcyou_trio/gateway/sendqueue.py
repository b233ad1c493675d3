"""A connection's outgoing queue: one ordered queue, two budgets, never awaited by producers.

Frames are of two kinds:

* **pushed** frames (live events) arrive whether or not the client asked. A fan-out queues a
  whole batch of events at once, so a backlog above the high-water mark is normal for a moment
  (a burst); a client is *slow* when its pushed backlog stays above the mark for longer than
  ``slow_after_s``, or grows past :data:`HARD_LIMIT_FACTOR` times the mark. Then :meth:`put`
  refuses and the connection is closed.
* **answers** (replies, and the backfill that answers a join) exist because the client asked.
  They are always queued (a large backfill must not get a client disconnected), but the
  connection reads its next request only once the answer bytes are back under the high-water
  mark (:meth:`SendQueue.wait_for_room`): a client that asks faster than it reads is slowed down.

Frames are whole WebSocket frames as bytes (:mod:`arcyou_trio.gateway.wireframe`). Producers call
:meth:`put` synchronously; the connection starts its writer when something is queued, and the
writer's :meth:`take_nowait` hands over everything queued (up to a byte budget) so that it goes
out in one socket write.
"""

from __future__ import annotations

from collections import deque

import trio

#: A pushed backlog this many times the high-water mark is slow whatever its age.
HARD_LIMIT_FACTOR = 4
#: Most bytes the writer takes for one socket write.
WRITE_BATCH_BYTES = 256 * 1024


#: The shared, never-written stand-in for an empty queue.
_EMPTY: deque[tuple[bytes, bool]] = deque(maxlen=0)


class SendQueue:
    def __init__(self, high_water_bytes: int, slow_after_s: float = 1.0) -> None:
        self.high_water_bytes = high_water_bytes
        self.hard_limit_bytes = HARD_LIMIT_FACTOR * high_water_bytes
        self.slow_after_s = slow_after_s
        self.pushed_bytes = 0
        self.answer_bytes = 0
        # (frame, pushed) in send order. Most connections are idle with nothing queued, so the
        # deque and the event are made only when needed (a deque alone is ~760 bytes).
        self._items: deque[tuple[bytes, bool]] = _EMPTY
        self._room: trio.Event | None = None
        self._over_since: float | None = None
        self._in_flight = False  # the writer took frames and has not reported them sent
        self.overflowed = False
        self.closed = False

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written: a frame may bypass the queue."""
        return not self._items and not self._in_flight

    @property
    def queued_bytes(self) -> int:
        return self.pushed_bytes + self.answer_bytes

    def put(self, frame: bytes, *, pushed: bool) -> bool:
        """Queue a frame; False (and ``overflowed``) when the client is too slow for it."""
        if self.overflowed or self.closed:
            return False
        size = len(frame)
        if pushed:
            backlog = self.pushed_bytes + size
            if backlog > self.high_water_bytes and self._items:
                now = trio.current_time()
                if self._over_since is None:
                    self._over_since = now
                if backlog > self.hard_limit_bytes or now - self._over_since > self.slow_after_s:
                    self.overflowed = True
                    return False
            self.pushed_bytes = backlog
        else:
            self.answer_bytes += size
        if self._items is _EMPTY:
            self._items = deque()
        self._items.append((frame, pushed))
        return True

    def take_nowait(self) -> list[tuple[bytes, bool]] | None:
        """The next frames to send (at least one), or None if nothing is queued."""
        items = self._items
        if not items:
            return None
        self._in_flight = True
        if len(items) == 1:
            return [items.popleft()]
        out: list[tuple[bytes, bool]] = []
        budget = WRITE_BATCH_BYTES
        while items and (budget > 0 or not out):
            item = items.popleft()
            budget -= len(item[0])
            out.append(item)
        return out

    def sent(self, items: list[tuple[bytes, bool]]) -> None:
        """The writer finished sending ``items``."""
        self._in_flight = False
        for frame, pushed in items:
            if pushed:
                self.pushed_bytes -= len(frame)
            else:
                self.answer_bytes -= len(frame)
        if self.pushed_bytes <= self.high_water_bytes:
            self._over_since = None
        if self.answer_bytes <= self.high_water_bytes and self._room is not None:
            self._room.set()
        if not self._items:
            self._items = _EMPTY

    async def wait_for_room(self) -> None:
        """Wait until the answers still queued are under the high-water mark."""
        while self.answer_bytes > self.high_water_bytes and not self.closed:
            self._room = trio.Event()
            await self._room.wait()

    def close(self, *, drop: bool) -> None:
        """Accept nothing more; with ``drop``, forget what is still waiting."""
        self.closed = True
        if drop:
            self._items = _EMPTY
            self.pushed_bytes = self.answer_bytes = 0
        if self._room is not None:
            self._room.set()

    def __len__(self) -> int:
        return len(self._items)
