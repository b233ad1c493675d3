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
done by a janitor task so that a disconnect never waits on Redis. That wait is bounded like a
database step (``DB_TIMEOUT_MS`` unless told otherwise): past it the join fails with
:class:`~arcyou_trio.errors.BusTimeout`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

import attrs
import orjson
import trio

from arcyou_trio.bus import Channels, Subscriber
from arcyou_trio.config import PubSubMode
from arcyou_trio.errors import BusTimeout, BusUnavailable, StoreError
from arcyou_trio.gateway.wireframe import backfill_frames, text_frame
from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.protocol.system import EVERYONE, Ending, ending_of
from arcyou_trio.store import Store

log = logging.getLogger(__name__)

#: Deliveries the hub makes before it lets other tasks run.
DELIVERIES_PER_TURN = 2000


class Member(Protocol):
    @property
    def user_id(self) -> uuid.UUID | None:
        """Whose connection this is."""

    def end_room(self, room_id: uuid.UUID, seq: int) -> None:
        """The member's delivery of the room ends with the message ``seq`` (its removal, the
        room's close): nothing after it is delivered, and the member leaves once it has it."""

    def deliver_live(self, room_id: uuid.UUID, seq: int, frame: bytes) -> None:
        """Queue one live event frame (never blocks)."""

    def resync(self, room_id: uuid.UUID, last_seq: int, *, wait: bool = False) -> None:
        """The room has messages up to ``last_seq``: fill whatever was missed (never blocks);
        with ``wait``, only what is still missing after the gap wait."""


def endings_of(page: list[ChatMessage]) -> tuple[tuple[int, Ending], ...]:
    """The removals and close among messages read from the database, as (seq, whose)."""
    found = ((m.seq, ending_of(m.type, m.content)) for m in page if m.type == "system")
    return tuple((seq, ending) for seq, ending in found if ending is not None)


@attrs.frozen
class FramedPage:
    """A page of a room read from the database, framed once for every connection that asked."""

    frames: list[tuple[int, bytes]]
    upto_seq: int
    last_seq: int
    #: (seq, whose delivery ends there) for the page's removals and close.
    endings: tuple[tuple[int, Ending], ...] = ()


@attrs.define(eq=False)
class _PageRead:
    done: trio.Event = attrs.Factory(trio.Event)
    result: FramedPage | None = None
    error: BaseException | None = None


class RoomHub:
    def __init__(
        self,
        channels: Channels,
        subscriber: Subscriber,
        store: Store,
        *,
        page_size: int,
        resync_interval_s: float = 0.0,
        subscribe_timeout_s: float | None = None,
    ) -> None:
        """``subscribe_timeout_s`` bounds a join's wait for its subscription (perconv); by
        default the store's timeout (``DB_TIMEOUT_MS``)."""
        self.channels = channels
        self.mode = channels.mode
        self._subscriber = subscriber
        self._store = store
        self._page_size = page_size
        self._resync_interval_s = resync_interval_s
        self._subscribe_timeout_s = (
            store.timeout_s if subscribe_timeout_s is None else subscribe_timeout_s
        )
        # One database read per (room, after_seq) at a time, shared by every connection that
        # needs that page: after Redis lost events, a room's members all miss the same ones.
        self._pages: dict[tuple[uuid.UUID, int], _PageRead] = {}
        self._members: dict[uuid.UUID, set[Member]] = {}
        self._locks: dict[uuid.UUID, trio.Lock] = {}
        self._subscribed: set[uuid.UUID] = set()
        self._maybe_idle: set[uuid.UUID] = set()
        self._idle_wake = trio.Event()
        self.events_received = 0
        self.deliveries = 0

    # -- membership ------------------------------------------------------------------------

    async def add(self, room_id: uuid.UUID, member: Member) -> None:
        """Register ``member`` for live events of ``room_id``; subscribed when this returns.

        Raises :class:`BusUnavailable` if the subscription fails, :class:`BusTimeout` if Redis
        has not confirmed it in time (the member stays registered: the caller removes it).
        """
        self._members.setdefault(room_id, set()).add(member)
        if self.mode is PubSubMode.PERCONV and room_id not in self._subscribed:
            with trio.move_on_after(self._subscribe_timeout_s):
                lock = self._locks.setdefault(room_id, trio.Lock())
                async with lock:
                    if room_id not in self._subscribed:
                        await self._subscriber.subscribe(self.channels.for_room(str(room_id)))
                        self._subscribed.add(room_id)
                return
            raise BusTimeout(
                f"redis did not confirm the subscription to room {room_id} within "
                f"{self._subscribe_timeout_s * 1000:.0f} ms"
            )

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

    # -- gap fill --------------------------------------------------------------------------

    async def page(self, room_id: uuid.UUID, after_seq: int) -> FramedPage:
        """The room's messages after ``after_seq`` (one page), read once for all who ask."""
        key = (room_id, after_seq)
        read = self._pages.get(key)
        if read is None:
            read = self._pages[key] = _PageRead()
            try:
                page = await self._store.messages_after(room_id, after_seq, self._page_size)
                read.result = FramedPage(
                    backfill_frames(room_id, page.messages),
                    page.upto_seq,
                    page.last_seq,
                    endings_of(page.messages),
                )
            except BaseException as exc:
                read.error = exc
                raise
            finally:
                del self._pages[key]
                read.done.set()
        else:
            await read.done.wait()
        if read.result is None:
            raise StoreError(f"reading room {room_id} failed: {read.error!r}")
        return read.result

    async def resync_all(self, *, wait: bool = False) -> None:
        """After Redis lost events (or periodically, with ``wait``): tell every local member
        how far each of its rooms got."""
        rooms = list(self._members)
        if not rooms:
            return
        last = await self._store.room_last_seqs(rooms)
        for room_id, last_seq in last.items():
            for member in list(self._members.get(room_id, ())):
                member.resync(room_id, last_seq, wait=wait)

    # -- fan-out ---------------------------------------------------------------------------

    def dispatch(self, channel: str, data: str) -> int:
        """Deliver one published event to every local member of its room; returns how many."""
        try:
            event = orjson.loads(data)
            room_id = uuid.UUID(event["roomId"])
            message = event["message"]
            seq = message["seq"]
            if not isinstance(seq, int):
                raise TypeError("message.seq is not an integer")
            ending = ending_of(message.get("type"), message.get("content"))
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
            if ending is EVERYONE or (ending is not None and ending == member.user_id):
                member.end_room(room_id, seq)
            member.deliver_live(room_id, seq, frame)
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
            if self._resync_interval_s > 0:
                nursery.start_soon(self._resync_forever)
            task_status.started()

    async def _resync_forever(self) -> None:
        # A safety net: an event that is never published (its outbox row went dead, say) in a
        # room that then stays silent would otherwise reach joined connections only at their
        # next join. Events merely in flight close their gap during the gap wait: no read.
        while True:
            await trio.sleep(self._resync_interval_s)
            try:
                await self.resync_all(wait=True)
            except StoreError as exc:
                log.warning("periodic resync failed: %s", exc)

    async def _read_forever(self, retry_s: float) -> None:
        lost = False
        while True:
            try:
                if lost:
                    # Subscribed again (Redis confirmed): anything published from now on
                    # arrives; what was published meanwhile is read from the database.
                    await self._subscriber.reconnect()
                    await self.resync_all()
                    lost = False
                async for batch in self._subscriber.batches():
                    done = 0
                    for channel, data in batch:
                        done += self.dispatch(channel, data)
                        if done >= DELIVERIES_PER_TURN:
                            await trio.lowlevel.checkpoint()
                            done = 0
            except BusUnavailable as exc:
                log.warning("redis subscription broken (%s); reconnecting", exc)
                lost = True
                await trio.sleep(retry_s)
            except StoreError as exc:
                log.warning("reading rooms after a redis outage failed (%s); retrying", exc)
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
