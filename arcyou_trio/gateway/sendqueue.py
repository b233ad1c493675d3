"""A connection's outgoing queue: bounded by bytes, never awaited by the producer.

Fan-out and replies call :meth:`SendQueue.put` synchronously; it refuses (returns False) once
the bytes waiting for the socket would pass the high-water mark, and the connection is then
closed. Only the connection's own writer task ever waits, on :meth:`get`.
"""

from __future__ import annotations

from collections import deque

import trio


class SendQueue:
    def __init__(self, high_water_bytes: int) -> None:
        self.high_water_bytes = high_water_bytes
        self.queued_bytes = 0
        self._frames: deque[tuple[str, int]] = deque()
        self._ready = trio.Event()
        self.overflowed = False
        self.closed = False

    def put(self, frame: str, size: int) -> bool:
        """Queue a frame of ``size`` bytes; False (and ``overflowed``) past the high water."""
        if self.overflowed or self.closed:
            return False
        if self.queued_bytes + size > self.high_water_bytes and self._frames:
            self.overflowed = True
            return False
        self._frames.append((frame, size))
        self.queued_bytes += size
        self._ready.set()
        return True

    async def get(self) -> tuple[str, int] | None:
        """The next frame to send, or None once the queue is closed and drained."""
        while not self._frames:
            if self.closed:
                return None
            self._ready = trio.Event()
            await self._ready.wait()
        return self._frames.popleft()

    def close(self, *, drop: bool) -> None:
        """Accept nothing more; with ``drop``, forget what is still waiting."""
        self.closed = True
        if drop:
            self._frames.clear()
            self.queued_bytes = 0
        self._ready.set()

    def sent(self, size: int) -> None:
        """The writer finished sending a frame of ``size`` bytes."""
        self.queued_bytes -= size

    def __len__(self) -> int:
        return len(self._frames)
