"""Pre-built WebSocket frames, the direct-write fast path and the slow-consumer rule.

The ``test_trio_websocket_assumption_*`` tests pin, one each, the trio-websocket internals listed
at the top of ``arcyou_trio/gateway/wireframe.py``: each fails if a release changes what that
module relies on.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
import wsproto
import wsproto.events
from hypothesis import given
from hypothesis import strategies as st

from arcyou_trio.gateway.http_front import PrefixedStream
from arcyou_trio.gateway.sendqueue import HARD_LIMIT_FACTOR, SendQueue
from arcyou_trio.gateway.wireframe import send_frames, text_frame, write_now

StreamPair = Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]]


def _client_reads(data: bytes) -> list[str]:
    """What a WebSocket client makes of ``data`` sent by a server."""
    client = wsproto.connection.Connection(wsproto.ConnectionType.CLIENT)
    client.receive_data(data)
    out: list[str] = []
    for event in client.events():
        assert isinstance(event, wsproto.events.TextMessage), event
        assert event.message_finished
        out.append(event.data)
    return out


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_lengths(size: int) -> None:
    payload = "x" * size
    assert _client_reads(text_frame(payload.encode())) == [payload]


@given(st.lists(st.text(max_size=300), max_size=20))
def test_concatenated_frames_are_separate_messages(texts: list[str]) -> None:
    data = b"".join(text_frame(t.encode()) for t in texts)
    assert _client_reads(data) == texts


async def test_frames_reach_a_real_client_in_order() -> None:
    """Fast path, writer path and trio-websocket's own sends interleave into one valid stream."""
    got: list[str] = []
    done = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        assert write_now(ws, text_frame(b"1")) == len(text_frame(b"1"))
        await send_frames(ws, text_frame(b"2") + text_frame(b"3"))
        await ws.send_message("4")
        async with ws._stream_lock:  # someone else is writing: the fast path must step aside
            assert write_now(ws, text_frame(b"x")) is None
        assert write_now(ws, text_frame(b"5")) == len(text_frame(b"5"))
        await done.wait()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        port = server.port
        with trio.fail_after(10):
            async with trio_websocket.open_websocket("127.0.0.1", port, "/", use_ssl=False) as ws:
                for _ in range(5):
                    got.append(str(await ws.get_message()))
        done.set()
        nursery.cancel_scope.cancel()
    assert got == ["1", "2", "3", "4", "5"]


# -- trio-websocket internals (see the list at the top of wireframe.py) -------------------------


async def _lockstep() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """(client, server) in memory; a write blocks until the other end reads it."""
    return trio.testing.lockstep_stream_pair()


async def _memory() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """(client, server) in memory; writes are buffered."""
    return trio.testing.memory_stream_pair()


async def _tcp_like_the_gateway() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """(client, server) over loopback TCP, the server end wrapped as the gateway's HTTP front
    wraps it before handing it to trio-websocket."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        server = await listener.accept()
    return client, PrefixedStream(server, b"")


@asynccontextmanager
async def _server_side(
    streams: StreamPair,
) -> AsyncIterator[tuple[trio_websocket.WebSocketConnection, Any, Any, wsproto.WSConnection]]:
    """``(ws, server stream, client stream, client)``: trio-websocket's server end, and a bare
    wsproto client that reads the handshake reply and then only when the test reads for it."""
    client_stream, server_stream = await streams()
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)

    async def handshake() -> None:
        request = wsproto.events.Request(host="localhost", target="/")
        await client_stream.send_all(client.send(request))
        while not any(isinstance(e, wsproto.events.AcceptConnection) for e in client.events()):
            client.receive_data(await client_stream.receive_some())

    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(5):
                async with trio.open_nursery() as handshaking:
                    handshaking.start_soon(handshake)
                    request = await trio_websocket.wrap_server_stream(nursery, server_stream)
                    ws = await request.accept()
            yield ws, server_stream, client_stream, client
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(client_stream)
        await trio.aclose_forcefully(server_stream)


async def _read_texts(client: wsproto.WSConnection, stream: trio.abc.Stream, n: int) -> list[str]:
    """The next ``n`` text messages the client end receives."""
    got: list[str] = []
    with trio.fail_after(5):
        while len(got) < n:
            client.receive_data(await stream.receive_some())
            for event in client.events():
                assert isinstance(event, wsproto.events.TextMessage), event
                got.append(event.data)
    return got


async def test_trio_websocket_assumption_stream_is_the_stream_it_was_given() -> None:
    """``_stream``: the stream handed to trio-websocket (the gateway's PrefixedStream, with the
    non-blocking socket write_now uses); its ``send_all`` puts our bytes on the wire as they are."""
    async with _server_side(_tcp_like_the_gateway) as (ws, server_stream, client_stream, client):
        assert ws._stream is server_stream
        assert os.get_blocking(ws._stream.socket.fileno()) is False
        await ws._stream.send_all(text_frame(b"raw"))
        assert write_now(ws, text_frame(b"direct")) == len(text_frame(b"direct"))
        assert await _read_texts(client, client_stream, 2) == ["raw", "direct"]


async def test_trio_websocket_assumption_stream_lock_is_held_while_it_writes() -> None:
    """``_stream_lock``: a StrictFIFOLock trio-websocket holds for the whole of each write, so
    write_now sees it locked and send_frames queues behind it."""
    async with _server_side(_lockstep) as (ws, _server_stream, client_stream, client):
        assert isinstance(ws._stream_lock, trio.StrictFIFOLock)
        assert not ws._stream_lock.locked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.send_message, "theirs")
            await trio.testing.wait_all_tasks_blocked()  # in send_all: the client is not reading
            assert ws._stream_lock.locked()
            assert write_now(ws, text_frame(b"x")) is None
            nursery.start_soon(send_frames, ws, text_frame(b"ours"))
            await trio.testing.wait_all_tasks_blocked()
            assert await _read_texts(client, client_stream, 2) == ["theirs", "ours"]
        assert not ws._stream_lock.locked()


async def test_trio_websocket_assumption_close_reason_is_set_once_closing_starts() -> None:
    """``_close_reason``: None while open, a truthy CloseReason (``ws.closed``) from the start
    of a close, ours before its close frame is written, or the peer's."""
    async with _server_side(_lockstep) as (ws, _server_stream, _client_stream, _client):
        assert ws._close_reason is None
        assert ws.closed is None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.aclose, 1000, "bye")
            await trio.testing.wait_all_tasks_blocked()  # writing the close frame, unread
            reason = ws._close_reason
            assert reason is not None
            assert reason
            assert ws.closed is reason
            assert write_now(ws, text_frame(b"x")) is None
            with trio.fail_after(1), pytest.raises(trio_websocket.ConnectionClosed):
                await send_frames(ws, text_frame(b"x"))
            nursery.cancel_scope.cancel()

    async with _server_side(_memory) as (ws, _server_stream, client_stream, client):
        close = wsproto.events.CloseConnection(code=4000, reason="done")
        await client_stream.send_all(client.send(close))
        await trio.testing.wait_all_tasks_blocked()  # the reader task handled it
        assert ws._close_reason is not None
        assert ws._close_reason.code == 4000
        assert ws.closed is ws._close_reason


async def test_trio_websocket_assumption_abort_web_socket_closes_without_waiting() -> None:
    """``_abort_web_socket()``: a coroutine method of no arguments; called as send_frames calls
    it (stream lock held, a peer that reads nothing) it returns at once, and the connection is
    closed (1006) for every later call; a second call keeps the first reason."""
    method = trio_websocket.WebSocketConnection._abort_web_socket
    assert inspect.iscoroutinefunction(method)
    assert list(inspect.signature(method).parameters) == ["self"]
    async with _server_side(_lockstep) as (ws, _server_stream, _client_stream, _client):
        with trio.fail_after(1):
            async with ws._stream_lock:
                await ws._abort_web_socket()
        reason = ws._close_reason
        assert reason is not None
        assert reason.code == 1006
        with trio.fail_after(1):
            with pytest.raises(trio_websocket.ConnectionClosed):
                await ws.get_message()
            with pytest.raises(trio_websocket.ConnectionClosed):
                await ws.send_message("x")
            await ws.aclose()  # no close handshake left to wait for
            await ws._abort_web_socket()
        assert ws._close_reason is reason


async def test_send_frames_on_a_broken_stream_raises_connection_closed() -> None:
    """The error path of send_frames, end to end: a failed write closes the connection (1006)."""
    async with _server_side(_memory) as (ws, server_stream, _client_stream, _client):
        server_stream.send_stream.close()  # writes fail now; the reader task has not noticed
        with trio.fail_after(1), pytest.raises(trio_websocket.ConnectionClosed) as info:
            await send_frames(ws, text_frame(b"x"))
        assert info.value.reason.code == 1006
        assert not ws._stream_lock.locked()
        with trio.fail_after(1), pytest.raises(trio_websocket.ConnectionClosed):
            await ws.get_message()


# -- the send queue ----------------------------------------------------------------------------


def test_burst_above_high_water_is_tolerated_for_a_while() -> None:
    clock = trio.testing.MockClock()

    async def main() -> None:
        queue = SendQueue(1000, slow_after_s=1.0)
        frame = b"x" * 400
        assert queue.put(frame, pushed=True)
        assert queue.put(frame, pushed=True)
        assert queue.put(frame, pushed=True)  # above the mark: a burst, still fine
        clock.jump(0.5)
        assert queue.put(frame, pushed=True)
        clock.jump(0.6)  # above the mark for 1.1 s now
        assert not queue.put(frame, pushed=True)
        assert queue.overflowed

    trio.run(main, clock=clock)


def test_draining_below_high_water_resets_the_grace() -> None:
    clock = trio.testing.MockClock()

    async def main() -> None:
        queue = SendQueue(1000, slow_after_s=1.0)
        frame = b"x" * 600
        assert queue.put(frame, pushed=True)
        assert queue.put(frame, pushed=True)  # over
        items = queue.take_nowait()
        assert items is not None
        queue.sent(items)  # the writer caught up
        clock.jump(5)
        assert queue.put(frame, pushed=True)
        assert queue.put(frame, pushed=True)  # over again, but only just now
        assert not queue.overflowed

    trio.run(main, clock=clock)


def test_hard_limit_is_slow_at_once() -> None:
    async def main() -> None:
        queue = SendQueue(1000, slow_after_s=60.0)
        frame = b"x" * 500
        puts = [queue.put(frame, pushed=True) for _ in range(2 * HARD_LIMIT_FACTOR + 1)]
        assert puts[-1] is False
        assert all(puts[:-1])

    trio.run(main)


def test_answers_never_overflow_and_queue_is_idle_only_when_empty() -> None:
    async def main() -> None:
        queue = SendQueue(100)
        assert queue.idle
        for _ in range(50):
            assert queue.put(b"y" * 100, pushed=False)
        assert not queue.idle
        items = queue.take_nowait()
        assert items is not None and len(items) == 50
        assert not queue.idle  # taken, not yet sent: nothing may overtake these
        queue.sent(items)
        assert queue.idle

    trio.run(main)
