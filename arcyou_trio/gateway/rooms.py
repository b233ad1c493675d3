"""Room fan-out inside one gateway process, and the Redis subscriptions it needs.

The hub maps each room to the local connections that joined it. A live event from Redis is
parsed once, framed once (the worker already encoded it) and the same bytes are handed to every
member connection synchronously: fan-out never awaits a socket, and a connection that cannot keep
up is closed by its own queue. Events come in the batches the Redis reader read; the hub yields
to the scheduler every :data:`DELIVERIES_PER_TURN` deliveries so that writers and requests keep
running during a large fan-out.

In ``perconv`` mode the hub holds exactly the subscriptions its connections need: the first
local member of a room subscribes ``conv:{room}`` (and the join waits for Redis to confirm, so
no event published after the join's backfill can be missed); the last one leaving unsubscribes,
done by a janitor task so that a disconnect never waits on Redis.
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

import orjson
import trio

from arcyou_trio.bus import Channels, Subscriber
from arcyou_trio.config import PubSubMode
from arcyou_trio.errors import BusUnavailable
from arcyou_trio.gateway.wireframe import text_frame

log = logging.getLogger(__name__)

#: Deliveries the hub makes before it lets other tasks run.
DELIVERIES_PER_TURN = 2000


class Member(Protocol):
    def deliver_live(self, room_id: uuid.UUID, message_id: int, frame: bytes) -> None:
        """Queue one live event frame (never blocks)."""


class RoomHub:
    def __init__(self, channels: Channels, subscriber: Subscriber) -> None:
        self.channels = channels
        self.mode = channels.mode
        self._subscriber = subscriber
        self._members: dict[uuid.UUID, set[Member]] = {}
        self._locks: dict[uuid.UUID, trio.Lock] = {}
        self._subscribed: set[uuid.UUID] = set()
        self._maybe_idle: set[uuid.UUID] = set()
        self._idle_wake = trio.Event()
        self.events_received = 0
        self.deliveries = 0

    # -- membership ------------------------------------------------------------------------

    async def add(self, room_id: uuid.UUID, member: Member) -> None:
        """Register ``member`` for live events of ``room_id``; subscribed when this returns."""
        self._members.setdefault(room_id, set()).add(member)
        if self.mode is PubSubMode.PERCONV and room_id not in self._subscribed:
            lock = self._locks.setdefault(room_id, trio.Lock())
            async with lock:
                if room_id not in self._subscribed:
                    await self._subscriber.subscribe(self.channels.for_room(str(room_id)))
                    self._subscribed.add(room_id)

    def remove(self, room_id: uuid.UUID, member: Member) -> None:
        members = self._members.get(room_id)
        if members is None:
            return
        members.discard(member)
        if not members:
            del self._members[room_id]
            if self.mode is PubSubMode.PERCONV:
                self._maybe_idle.add(room_id)
                self._idle_wake.set()

    def local_rooms(self) -> int:
        return len(self._members)

    async def run_janitor(self) -> None:
        """Unsubscribe from rooms that lost their last local member (perconv only)."""
        while True:
            await self._idle_wake.wait()
            self._idle_wake = trio.Event()
            while self._maybe_idle:
                room_id = self._maybe_idle.pop()
                lock = self._locks.setdefault(room_id, trio.Lock())
                async with lock:
                    if room_id in self._members or room_id not in self._subscribed:
                        continue
                    try:
                        await self._subscriber.unsubscribe(self.channels.for_room(str(room_id)))
                    except BusUnavailable:
                        log.warning("unsubscribe from room %s failed; redis is down", room_id)
                    self._subscribed.discard(room_id)
                if room_id not in self._members:
                    self._locks.pop(room_id, None)

    # -- fan-out ---------------------------------------------------------------------------

    def dispatch(self, channel: str, data: str) -> int:
        """Deliver one published event to every local member of its room; returns how many."""
        try:
            event = orjson.loads(data)
            room_id = uuid.UUID(event["roomId"])
            message_id = event["message"]["id"]
            if not isinstance(message_id, int):
                raise TypeError("message.id is not an integer")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.warning("dropping malformed event on %s: %.200s", channel, data)
            return 0
        self.events_received += 1
        members = self._members.get(room_id)
        if not members:
            return 0
        frame = text_frame(data.encode())
        # Copy: delivering can close a connection, which removes it from the set.
        targets = list(members)
        for member in targets:
            member.deliver_live(room_id, message_id, frame)
        self.deliveries += len(targets)
        return len(targets)

    async def run_listener(
        self,
        *,
        retry_s: float = 0.5,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read Redis and dispatch, forever; reconnect (and resubscribe) when Redis breaks.

        Reports started once the global channel is subscribed (global mode) or at once.
        """
        async with trio.open_nursery() as nursery:
            # The reader must run before subscribing: it is what sees Redis's confirmation.
            nursery.start_soon(self._read_forever, retry_s)
            if self.mode is PubSubMode.GLOBAL:
                await self._subscribe_global(retry_s)
            nursery.start_soon(self.run_janitor)
            task_status.started()

    async def _read_forever(self, retry_s: float) -> None:
        while True:
            try:
                async for batch in self._subscriber.batches():
                    done = 0
                    for channel, data in batch:
                        done += self.dispatch(channel, data)
                        if done >= DELIVERIES_PER_TURN:
                            await trio.lowlevel.checkpoint()
                            done = 0
            except BusUnavailable as exc:
                log.warning("redis subscription broken (%s); reconnecting", exc)
                await trio.sleep(retry_s)

    async def _subscribe_global(self, retry_s: float) -> None:
        while True:
            try:
                await self._subscriber.subscribe(self.channels.global_channel)
                return
            except BusUnavailable as exc:
                log.warning(
                    "cannot subscribe to %s (%s); retrying", self.channels.global_channel, exc
                )
                await trio.sleep(retry_s)
