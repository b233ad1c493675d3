"""One simulated chat client with the retry discipline of a real one.

A :class:`Client` keeps one WebSocket at a time to a gateway its ``choose_url`` picks (random for
the load clients). Each connection: ``auth`` (the token is the user's UUID, dev mode), then a
``join`` of every room with ``since_message_id`` = the highest message id this client has
received in that room (left out while it has none), then, under load, one send at a time:

- every message has a unique ``temp_id``; the *same* send (same ``temp_id``) is repeated until a
  success reply arrives: after an error reply (short pause, same connection), after
  ``SEND_TIMEOUT_S`` without a reply, or after a disconnect (new connection first);
- any failure of the connection or of its handshake ends it; the client reconnects after a short
  random backoff, re-authenticates and resumes every room as above.

Every event is recorded per connection and room (:class:`~arcyou_harness.chaos.model.Recorder`).
:meth:`Client.pause` stops reading the socket (and sending) for a while, as a busy or
backgrounded app would; the gateway may close the connection as a slow consumer meanwhile.
:meth:`Client.run` with ``final`` set does the closing resume: it waits until this client holds
every message the database has for its rooms (``expected``), re-joining with the newest
``since_message_id`` to page forward when the events stop coming.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import orjson
import trio
import trio_websocket

from arcyou_harness.chaos import wire
from arcyou_harness.chaos.model import Recorder

SEND_TIMEOUT_S = 3.0
HANDSHAKE_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
QUIET_S = 1.5  # final resume: no event for this long means the backfill is over
PAUSED_RCVBUF = 4096


CONNECT_ERRORS = (OSError, trio.TooSlowError, trio_websocket.HandshakeError)


class Disconnect(Exception):
    """This connection is given up (the reason is the message)."""


@attrs.frozen
class Outgoing:
    temp_id: str
    room: str
    text: str


class _Conn:
    """One WebSocket: the reader task, and the replies it routes to the client's requests."""

    def __init__(self, client: Client, ws: trio_websocket.WebSocketConnection, key: str) -> None:
        self.client = client
        self.ws = ws
        self.key = key
        self._control_send, self._control_recv = trio.open_memory_channel[dict[str, Any]](math.inf)
        self._reply_send, self._reply_recv = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.waiting: str | None = None
        self.ended = ""

    async def read_loop(self, scope: trio.CancelScope) -> None:
        client = self.client
        try:
            while True:
                if client.pause_until > trio.current_time():
                    await trio.sleep_until(client.pause_until)  # the pause itself: deliberate
                data = await self.ws.get_message()
                self._handle(data)
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            code = reason.code if reason is not None else None
            text = (reason.reason or "") if reason is not None else ""
            self.ended = self.ended or f"closed {code} {text}".strip()
        finally:
            scope.cancel()

    def _handle(self, data: str | bytes) -> None:
        client = self.client
        rec = client.rec
        try:
            frame = orjson.loads(data)
            op = frame.get("op")
        except (orjson.JSONDecodeError, AttributeError):
            rec.malformed += 1
            return
        if op == "event":
            try:
                room = str(frame["roomId"])
                message = frame["message"]
                mid = int(message["id"])
                seq = message.get("seq", frame.get("seq"))
                source = str(frame.get("source"))
            except (KeyError, TypeError, ValueError):
                rec.malformed += 1
                return
            rec.deliver(self.key, room, (mid, seq if isinstance(seq, int) else None, source))
            client.saw(room, mid, source)
        elif op == "send":
            temp_id = frame.get("temp_id")
            message_id = frame.get("message_id")
            if frame.get("success") and isinstance(temp_id, str) and isinstance(message_id, int):
                client.acked(temp_id, message_id)
            if temp_id is not None and temp_id == self.waiting:
                self._reply_send.send_nowait(frame)
        else:
            self._control_send.send_nowait(frame)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        await self.ws.send_message(orjson.dumps(frame).decode())
        return await self._control_recv.receive()

    async def send_reply(self, temp_id: str) -> dict[str, Any] | None:
        """The reply to our send of ``temp_id``, or None after SEND_TIMEOUT_S (a pause of the
        client's reading stops that clock)."""
        deadline = trio.current_time() + SEND_TIMEOUT_S
        while True:
            with trio.move_on_at(deadline):
                return await self._reply_recv.receive()
            later = self.client.pause_until + SEND_TIMEOUT_S
            if later <= deadline:
                return None
            deadline = later


class Client:
    def __init__(
        self,
        name: str,
        user: str,
        rooms: tuple[str, ...],
        choose_url: Callable[[], str],
        rec: Recorder,
        rng: random.Random,
        *,
        small_rcvbuf: bool = False,
        on_event: Callable[[Client, str, int, str], None] | None = None,
        on_ack: Callable[[Client, str, int], None] | None = None,
        trace: bool = False,
    ) -> None:
        self.name = name
        self.user = user
        self.rooms = rooms
        self.choose_url = choose_url
        self.rec = rec
        self.rng = rng
        self.rcvbuf = PAUSED_RCVBUF if small_rcvbuf else None
        self.on_event = on_event
        self.on_ack = on_ack
        self.received: dict[str, set[int]] = {room: set() for room in rooms}
        self.top: dict[str, int] = dict.fromkeys(rooms, 0)
        self._queue_send, self._queue_recv = trio.open_memory_channel[Outgoing](math.inf)
        self.current: Outgoing | None = None
        self.enqueued = 0
        self.unacked = 0
        self.idle = trio.Event()
        self.idle.set()
        self.progress = trio.Event()
        self.connected = trio.Event()
        self.pause_until = -math.inf
        self.connections = 0
        self._was_ready = False
        self.ended: list[str] = []
        #: (trio time, what) of connection steps and sends, when tracing (the probe does)
        self.trace: list[tuple[float, str]] | None = [] if trace else None

    # -- called by the reader and by the run ------------------------------------------------

    def enqueue(self, message: Outgoing) -> None:
        self.enqueued += 1
        self.unacked += 1
        self.idle = trio.Event() if self.idle.is_set() else self.idle
        self._queue_send.send_nowait(message)

    def saw(self, room: str, mid: int, source: str) -> None:
        if room in self.received:
            self.received[room].add(mid)
            self.top[room] = max(self.top[room], mid)
        self.progress.set()
        self.progress = trio.Event()
        if self.on_event is not None:
            self.on_event(self, room, mid, source)

    def acked(self, temp_id: str, message_id: int) -> None:
        self.rec.ack(temp_id, message_id, trio.current_time())
        if self.on_ack is not None:
            self.on_ack(self, temp_id, message_id)

    def note(self, what: str) -> None:
        if self.trace is not None:
            self.trace.append((trio.current_time(), what))

    def pause(self, seconds: float) -> None:
        """Stop reading (and sending) for ``seconds`` from now."""
        self.rec.pauses += 1
        self.pause_until = trio.current_time() + seconds

    def missing(self, expected: Mapping[str, set[int]]) -> int:
        return sum(len(expected.get(room, set()) - self.received[room]) for room in self.rooms)

    # -- the connection loop ---------------------------------------------------------------

    async def run(self, *, final: Mapping[str, set[int]] | None = None) -> None:
        """Connect, resume, send (or, with ``final``, wait for everything) and reconnect after
        any failure; returns only in final mode, once nothing is missing."""
        failures = 0
        while True:
            self._was_ready = False
            done = await self._session(final)
            if done:
                return
            failures = 1 if self._was_ready else failures + 1
            backoff = min(2.0, 0.1 * 2 ** min(failures, 5)) * self.rng.uniform(0.5, 1.0)
            await trio.sleep(backoff)  # pacing the reconnects: deliberate

    async def _session(self, final: Mapping[str, set[int]] | None) -> bool:
        url = self.choose_url()
        try:
            async with wire.connect(url, timeout_s=CONNECT_TIMEOUT_S, rcvbuf=self.rcvbuf) as ws:
                self.connections += 1
                self.note(f"connected to {url}")
                conn = _Conn(self, ws, self.rec.new_connection(self.name, self.connections))
                done = False
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn.read_loop, nursery.cancel_scope)
                    try:
                        with trio.fail_after(HANDSHAKE_TIMEOUT_S):
                            await self._handshake(conn)
                        self.connected.set()
                        self._was_ready = True
                        self.note("resumed")
                        if final is None:
                            await self._send_loop(conn)
                        else:
                            done = await self._final(conn, final)
                    except (Disconnect, trio.TooSlowError, trio_websocket.ConnectionClosed) as exc:
                        conn.ended = conn.ended or f"{type(exc).__name__}: {exc}"[:80]
                    nursery.cancel_scope.cancel()
                if conn.ended:
                    self.note(f"ended: {conn.ended}")
                    self.rec.closes[conn.ended] += 1
                    self.ended.append(conn.ended)
                return done
        except CONNECT_ERRORS as exc:
            self.rec.connect_failures[type(exc).__name__] += 1
            self.note(f"connect failed: {type(exc).__name__}")
            return False
        except BaseExceptionGroup as group:  # raised inside the WebSocket's nursery
            matched, rest = group.split(CONNECT_ERRORS)
            if rest is not None or matched is None:
                raise
            first = matched.exceptions[0]
            self.rec.connect_failures[type(first).__name__] += 1
            self.note(f"connect failed: {type(first).__name__}")
            return False

    async def _handshake(self, conn: _Conn) -> None:
        reply = await conn.request({"op": "auth", "token": self.user})
        if not reply.get("success"):
            raise Disconnect(f"auth refused: {reply.get('error')}")
        for room in self.rooms:
            await self._join(conn, room)

    async def _join(self, conn: _Conn, room: str) -> None:
        frame: dict[str, Any] = {"op": "join", "room_id": room}
        if self.top[room]:
            frame["since_message_id"] = self.top[room]
        reply = await conn.request(frame)
        if not reply.get("success"):
            self.rec.join_errors[str(reply.get("error"))] += 1
            raise Disconnect(f"join refused: {reply.get('error')}")

    async def _send_loop(self, conn: _Conn) -> None:
        while True:
            if self.current is None:
                self.current = await self._queue_recv.receive()
            await self._send_until_acked(conn, self.current)
            self.current = None
            self.unacked -= 1
            if self.unacked == 0:
                self.idle.set()

    async def _send_until_acked(self, conn: _Conn, message: Outgoing) -> None:
        data = orjson.dumps(
            {
                "op": "send",
                "room_id": message.room,
                "content": {"text": message.text},
                "temp_id": message.temp_id,
            }
        ).decode()
        while message.temp_id not in self.rec.acks:
            if self.pause_until > trio.current_time():
                await trio.sleep_until(self.pause_until)  # paused apps do not send either
            conn.waiting = message.temp_id
            self.rec.attempt(message.temp_id, self.name, message.room)
            self.note(f"send {message.temp_id}")
            await conn.ws.send_message(data)
            reply = await conn.send_reply(message.temp_id)
            if reply is None:
                raise Disconnect("send timeout")
            self.note(f"reply {reply.get('success')} {reply.get('error', '')}".strip())
            if reply.get("success"):
                return
            self.rec.send_errors[str(reply.get("error"))] += 1
            await trio.sleep(self.rng.uniform(0.1, 0.4))  # pacing the retry: deliberate

    async def _final(self, conn: _Conn, expected: Mapping[str, set[int]]) -> bool:
        """Wait until nothing of ``expected`` is missing; page forward by re-joining (resume)
        whenever the events stop coming. The caller bounds the time."""
        while self.missing(expected):
            progress = self.progress
            with trio.move_on_after(QUIET_S):
                await progress.wait()
                continue
            for room in self.rooms:
                if expected.get(room, set()) - self.received[room]:
                    await self._join(conn, room)
        return True
