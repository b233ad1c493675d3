"""One WebSocket connection: its reader (requests, in order), its writer, and its limits.

Each connection runs in its own nursery. Its task reads and handles one request at a time (so
replies come back in request order). Everything sent — replies, backfill, live events — is
written straight to the socket when nothing else is waiting for it, else queued in the
connection's :class:`~arcyou_trio.gateway.sendqueue.SendQueue`, which a writer task (started only
while frames wait) drains in order. So ordering holds and a slow reader only ever hurts itself:
past the slow-consumer rule for live events the connection is closed; unread replies and backfill
instead hold back the reading of its next request. Short-lived tasks (a ping waiting for its
pong, a gap fill) run in a second nursery.

This module does the I/O only: what a refusal or failure tells the client is
:mod:`arcyou_trio.protocol.outcomes`, and every database or Redis step is bounded by the store or
the hub (``DB_TIMEOUT_MS``), not here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

import attrs
import trio
import trio_websocket

from arcyou_trio.auth import Verifier
from arcyou_trio.config import Settings
from arcyou_trio.errors import AuthError, BusUnavailable, StoreError
from arcyou_trio.gateway.rooms import RoomHub, endings_of
from arcyou_trio.gateway.sendbatch import SendCoalescer
from arcyou_trio.gateway.sendqueue import SendQueue
from arcyou_trio.gateway.wireframe import backfill_frames, json_frame, send_frames, write_now
from arcyou_trio.protocol import messages, outcomes
from arcyou_trio.protocol.outcomes import Refusal
from arcyou_trio.protocol.ratelimit import TokenBucket
from arcyou_trio.protocol.requests import Ack, Auth, Join, Limits, Request, RequestError, Send
from arcyou_trio.protocol.session import Phase, Session
from arcyou_trio.protocol.system import EVERYONE, Ending
from arcyou_trio.store import NewMessage, Store

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011

# How long a closing connection may take to finish the frame in flight and say goodbye.
FLUSH_GRACE_S = 2.0

# A whole WebSocket frame, ready for the socket (arcyou_trio.gateway.wireframe).
Frame = bytes


@attrs.define
class GatewayStats:
    connections: int = 0
    accepted: int = 0
    closed_slow: int = 0
    closed_auth_timeout: int = 0
    closed_too_big: int = 0
    closed_keepalive: int = 0
    refused_connections: int = 0
    errors: int = 0


@attrs.define
class GatewayContext:
    """What every connection of one gateway shares."""

    settings: Settings
    store: Store
    hub: RoomHub
    verifier: Verifier
    sender: SendCoalescer
    stats: GatewayStats = attrs.Factory(GatewayStats)
    connections: set[Connection] = attrs.Factory(set)
    draining: bool = False


class Connection:
    def __init__(self, ws: trio_websocket.WebSocketConnection, peer: str, ctx: GatewayContext):
        settings = ctx.settings
        self.ws = ws
        self.peer = peer
        self.ctx = ctx
        self.session: Session[Frame] = Session(
            bucket=TokenBucket(settings.rl_bucket_capacity, settings.rl_refill_ms),
            limits=Limits(max_text_chars=settings.max_text_chars),
            max_rooms=settings.max_rooms_per_connection,
        )
        self.queue = SendQueue(
            settings.ws_send_high_water_bytes, settings.ws_slow_consumer_ms / 1000
        )
        self._reader_scope = trio.CancelScope()
        self._tasks: trio.Nursery | None = None  # short-lived helpers (pings, fills) run here
        self._outer: trio.Nursery | None = None  # the writer runs here, only while needed
        self._writing = False
        self._pinging = False
        self._auth_deadline = trio.current_time() + settings.auth_timeout_ms / 1000
        self._idle_scope: trio.CancelScope | None = None
        self._close: tuple[int, str] | None = None
        self._flush = True
        self._mid_frame = False

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._outer = nursery
                with self._reader_scope:
                    async with trio.open_nursery() as tasks:
                        self._tasks = tasks
                        await self._reader()
                        self._tasks = None
                        tasks.cancel_scope.cancel()
                # The reader is done (client left, kill() or drain()): let the writer finish the
                # frame in flight (drain: everything queued), then stop it. A peer that does not
                # read even that much within the grace period loses the connection without a
                # close frame.
                self.queue.close(drop=not self._flush)
                self._ensure_writer()
                nursery.cancel_scope.deadline = trio.current_time() + FLUSH_GRACE_S
        finally:
            self._leave_all()
        if self._close is not None and not self._mid_frame:
            code, reason = self._close
            with trio.move_on_after(FLUSH_GRACE_S):
                await self.ws.aclose(code, reason)

    def kill(self, code: int, reason: str) -> None:
        """Close this connection from any task, without waiting; drop what is queued."""
        if self._close is not None:
            return
        self._close = (code, reason)
        self._flush = False
        self._leave_all()
        self.queue.close(drop=True)
        self._reader_scope.cancel()
        log.info("closing connection %s: %d %s", self.peer, code, reason)

    def drain(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close gracefully: finish the request in progress, send every queued reply, then
        close with ``code``. A request not yet read is not started."""
        if self._close is not None:
            return
        self._close = (code, reason)
        self._flush = True
        self._leave_all()
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    def start_ping(self) -> None:
        """Ping the peer (the gateway's keepalive sweep calls this every WS_PING_INTERVAL_MS).

        The ping's task lives only until the pong: an idle connection keeps no timer task of its
        own, which is most of what 20,000 idle connections cost.
        """
        if self._tasks is not None and not self._pinging and self._close is None:
            self._pinging = True
            self._tasks.start_soon(self._ping_once)

    async def _ping_once(self) -> None:
        with trio.move_on_after(self.ctx.settings.ws_ping_timeout_ms / 1000) as timer:
            try:
                await self.ws.ping()
            except trio_websocket.ConnectionClosed:
                return
        self._pinging = False
        if timer.cancelled_caught:
            self.ctx.stats.closed_keepalive += 1
            self.kill(CLOSE_GOING_AWAY, "keepalive timeout: no pong")

    def _leave_all(self) -> None:
        for room_id in list(self.session.rooms):
            self.ctx.hub.remove(room_id, self)

    def _ensure_writer(self) -> None:
        # Most frames go straight to the socket (wireframe.write_now): a writer task exists only
        # while frames are queued, so an idle connection costs no task for it.
        if not self._writing and len(self.queue) and self._outer is not None:
            self._writing = True
            self._outer.start_soon(self._writer)

    async def _writer(self) -> None:
        try:
            await self._write_queued()
        finally:
            self._writing = False

    async def _write_queued(self) -> None:
        while (items := self.queue.take_nowait()) is not None:
            data = items[0][0] if len(items) == 1 else b"".join(frame for frame, _ in items)
            # If we are cancelled while a frame is half written, the stream is no longer a valid
            # WebSocket: no close frame may follow it.
            self._mid_frame = True
            try:
                await send_frames(self.ws, data)
            except trio_websocket.ConnectionClosed:
                self._reader_scope.cancel()
                return
            self._mid_frame = False
            self.queue.sent(items)

    def _send(self, frame: Frame, *, pushed: bool = False) -> None:
        if self.queue.idle and not self.queue.closed:
            written = write_now(self.ws, frame)
            if written == len(frame):
                return
            if written:
                # The rest of a frame: nothing else may be written before it, and if it is
                # dropped no close frame may follow.
                self._mid_frame = True
                frame = frame[written:]
        if not self.queue.put(frame, pushed=pushed):
            self.ctx.stats.closed_slow += 1
            self.kill(CLOSE_POLICY, "send buffer exceeded WS_SEND_HIGH_WATER")
            return
        self._ensure_writer()

    def _reply(self, obj: dict[str, Any]) -> None:
        self._send(json_frame(obj))

    # -- live events (called by the hub, never blocks) -------------------------------------

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.session.user_id

    def end_room(self, room_id: uuid.UUID, seq: int) -> None:
        self.session.end_room(room_id, seq)

    def _apply_endings(self, room_id: uuid.UUID, endings: Iterable[tuple[int, Ending]]) -> None:
        for seq, ending in endings:
            if ending is EVERYONE or ending == self.session.user_id:
                self.session.end_room(room_id, seq)

    def _leave_if_finished(self, room_id: uuid.UUID) -> None:
        # Removed from the room (or it closed) and the client has that message: nothing more
        # of the room reaches this connection; its send/ack/join are refused by the database.
        if self.session.finished(room_id):
            self.session.leave(room_id)
            self.ctx.hub.remove(room_id, self)

    def deliver_live(self, room_id: uuid.UUID, seq: int, frame: Frame) -> None:
        for out in self.session.on_live(room_id, seq, frame):
            self._send(out, pushed=True)
        self._leave_if_finished(room_id)
        if self.session.gap(room_id) is not None:
            # Probably only late (two workers publish out of order): wait a little first.
            self._start_fill(room_id, self.ctx.settings.gap_wait_ms / 1000)

    def resync(self, room_id: uuid.UUID, last_seq: int, *, wait: bool = False) -> None:
        """The room has messages up to ``last_seq`` (read after Redis came back, or by the
        periodic resync with ``wait``): fill any gap."""
        self.session.note_known(room_id, last_seq)
        if self.session.gap(room_id) is not None:
            self._start_fill(room_id, self.ctx.settings.gap_wait_ms / 1000 if wait else 0.0)

    def _start_fill(self, room_id: uuid.UUID, wait_s: float) -> None:
        if self._tasks is not None and self._close is None and self.session.claim_fill(room_id):
            self._tasks.start_soon(self._fill, room_id, wait_s)

    async def _fill(self, room_id: uuid.UUID, wait_s: float) -> None:
        """Read what this connection is missing of ``room_id`` from the database, page by page
        (each page once the client has read the previous one), until the gap is closed."""
        try:
            if wait_s:
                await trio.sleep(wait_s)
            while (after := self.session.gap(room_id)) is not None:
                await self.queue.wait_for_room()
                try:
                    page = await self.ctx.hub.page(room_id, after)
                except StoreError as exc:
                    log.warning("filling room %s for %s failed: %s", room_id, self.peer, exc)
                    await trio.sleep(self.ctx.settings.gap_wait_ms / 1000 + 0.5)
                    continue
                self._apply_endings(room_id, page.endings)
                frames = self.session.on_page(room_id, page.frames, page.upto_seq, page.last_seq)
                for frame in frames:
                    self._send(frame)
                self._leave_if_finished(room_id)
        finally:
            self.session.release_fill(room_id)

    # -- requests --------------------------------------------------------------------------

    async def _reader(self) -> None:
        max_bytes = self.ctx.settings.max_body_bytes
        while self._close is None:
            # Between requests the connection is idle: drain() may stop it here, never in the
            # middle of a request (a send is committed and acked, or not started).
            with trio.CancelScope() as idle:
                self._idle_scope = idle
                if self.session.phase is not Phase.READY:
                    idle.deadline = self._auth_deadline
                # Answers the client has not read yet hold back its next request.
                await self.queue.wait_for_room()
                try:
                    data = await self.ws.get_message()
                except trio_websocket.ConnectionClosed:
                    return
            self._idle_scope = None
            if idle.cancelled_caught:
                if self._close is None:  # not drain(): the authentication deadline passed
                    self.ctx.stats.closed_auth_timeout += 1
                    self.kill(CLOSE_POLICY, "authentication timeout")
                return
            # trio-websocket limits characters; the seed's limit is in bytes.
            if (
                isinstance(data, str)
                and len(data) * 4 > max_bytes
                and len(data.encode()) > max_bytes
            ):
                self.ctx.stats.closed_too_big += 1
                self.kill(CLOSE_TOO_BIG, f"message larger than {max_bytes} bytes")
                return
            try:
                request = self.session.receive(data, trio.current_time() * 1000)
                await self._handle(request)
            except RequestError as err:
                self._reply(messages.error_reply(err))

    async def _handle(self, request: Request) -> None:
        match request:
            case Auth():
                self._auth(request)
            case Join():
                await self._join(request)
            case Send():
                await self._send_message(request)
            case Ack():
                await self._ack(request)

    def _auth(self, request: Auth) -> None:
        verifier = self.ctx.verifier
        try:
            user_id = verifier.verify(request.token)
        except AuthError as exc:
            # The peer and the reason, never the token.
            log.info("auth failed from %s: %s (%s)", self.peer, exc.reason, exc)
            # Dev-mode tokens are plain UUIDs: no reason, the replies stay exactly the seed's.
            self._reply(outcomes.auth_failed(None if verifier.dev_mode else exc.reason))
            return
        self.session.authenticated(user_id)
        self._reply(messages.auth_ok(user_id))

    @property
    def _user(self) -> uuid.UUID:
        assert self.session.user_id is not None
        return self.session.user_id

    async def _join(self, request: Join) -> None:
        room_id = request.room_id
        self.session.begin_join(room_id)
        try:
            await self.ctx.hub.add(room_id, self)
            backfill = await self.ctx.store.join_room(
                room_id,
                self._user,
                self.ctx.settings.backfill_limit,
                request.since_message_id,
            )
        except (StoreError, BusUnavailable) as exc:
            self._abort_join(room_id)
            raise self._unavailable("join", exc, room_id=room_id) from None
        if isinstance(backfill, Refusal):
            self._abort_join(room_id)
            raise outcomes.refused("join", backfill, room_id=room_id)
        self._reply(messages.join_ok(room_id))
        self._apply_endings(room_id, endings_of(backfill.messages))
        out = self.session.end_join(
            room_id,
            start_seq=backfill.start_seq,
            page=backfill_frames(room_id, backfill.messages),
            upto_seq=backfill.upto_seq,
            last_seq=backfill.last_seq,
        )
        for frame in out:
            self._send(frame)
        self._leave_if_finished(room_id)
        if self.session.gap(room_id) is not None:
            self._start_fill(room_id, 0.0)  # more than one page: the rest follows as read

    def _abort_join(self, room_id: uuid.UUID) -> None:
        self.session.abort_join(room_id)
        if not self.session.is_member_of(room_id):
            self.ctx.hub.remove(room_id, self)

    async def _send_message(self, request: Send) -> None:
        try:
            # Every send goes through group commit.
            result = await self.ctx.sender.send(
                NewMessage(
                    room_id=request.room_id,
                    user_id=self._user,
                    type=request.type.value,
                    content=request.content,
                    temp_id=request.temp_id,
                    reply_to=request.reply_to_message_id,
                )
            )
        except StoreError as exc:
            raise self._unavailable("send", exc, temp_id=request.temp_id) from None
        if isinstance(result, Refusal):
            raise outcomes.refused("send", result, temp_id=request.temp_id, room_id=request.room_id)
        self._reply(messages.send_ok(result.message.id, request.temp_id))

    async def _ack(self, request: Ack) -> None:
        try:
            result = await self.ctx.store.ack(
                request.room_id, self._user, request.last_read_message_id
            )
        except StoreError as exc:
            raise self._unavailable("ack", exc, room_id=request.room_id) from None
        if isinstance(result, Refusal):
            raise outcomes.refused("ack", result, room_id=request.room_id)
        self._reply(messages.ack_ok(request.room_id, result))

    def _unavailable(
        self,
        op: str,
        exc: StoreError | BusUnavailable,
        *,
        temp_id: str | None = None,
        room_id: uuid.UUID | None = None,
    ) -> RequestError:
        self.ctx.stats.errors += 1
        log.warning("%s failed for %s: %s", op, self.peer, exc or type(exc).__name__)
        return outcomes.unavailable(op, exc, temp_id=temp_id, room_id=room_id)
