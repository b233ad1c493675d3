"""A connection's outgoing queue: one ordered queue, two budgets, never awaited by producers.

Frames are of two kinds:

* **pushed** frames (live events) arrive whether or not the client asked. If the pushed bytes
  waiting for the socket would pass the high-water mark, the client is not keeping up:
  :meth:`SendQueue.put` refuses and the connection is closed.
* **answers** (replies, and the backfill that answers a join) exist because the client asked.
  They are always queued (a large backfill must not get a client disconnected), but the
  connection reads its next request only once the answer bytes are back under the high-water
  mark (:meth:`SendQueue.wait_for_room`): a client that asks faster than it reads is slowed down.

Producers call :meth:`put` synchronously; only the connection's own writer waits, on :meth:`get`.
"""

from __future__ import annotations

from collections import deque

import attrs
import trio


@attrs.frozen
class Item:
    frame: str
    size: int
    pushed: bool


class SendQueue:
    def __init__(self, high_water_bytes: int) -> None:
        self.high_water_bytes = high_water_bytes
        self.pushed_bytes = 0
        self.answer_bytes = 0
        self._items: deque[Item] = deque()
        self._ready = trio.Event()
        self._room = trio.Event()
        self.overflowed = False
        self.closed = False

    @property
    def queued_bytes(self) -> int:
        return self.pushed_bytes + self.answer_bytes

    def put(self, frame: str, size: int, *, pushed: bool) -> bool:
        """Queue a frame; False (and ``overflowed``) when pushed bytes would pass the mark."""
        if self.overflowed or self.closed:
            return False
        if pushed:
            if self.pushed_bytes + size > self.high_water_bytes and self._items:
                self.overflowed = True
                return False
            self.pushed_bytes += size
        else:
            self.answer_bytes += size
        self._items.append(Item(frame, size, pushed))
        self._ready.set()
        return True

    async def get(self) -> Item | None:
        """The next frame to send, or None once the queue is closed and drained."""
        while not self._items:
            if self.closed:
                return None
            self._ready = trio.Event()
            await self._ready.wait()
        return self._items.popleft()

    def sent(self, item: Item) -> None:
        """The writer finished sending ``item``."""
        if item.pushed:
            self.pushed_bytes -= item.size
        else:
            self.answer_bytes -= item.size
            if self.answer_bytes <= self.high_water_bytes:
                self._room.set()

    async def wait_for_room(self) -> None:
        """Wait until the answers still queued are under the high-water mark."""
        while self.answer_bytes > self.high_water_bytes and not self.closed:
            self._room = trio.Event()
            await self._room.wait()

    def close(self, *, drop: bool) -> None:
        """Accept nothing more; with ``drop``, forget what is still waiting."""
        self.closed = True
        if drop:
            self._items.clear()
            self.pushed_bytes = self.answer_bytes = 0
        self._ready.set()
        self._room.set()

    def __len__(self) -> int:
        return len(self._items)
