"""Pre-built WebSocket frames, the direct-write fast path and the slow-consumer rule."""

from __future__ import annotations

import pytest
import trio
import trio.testing
import trio_websocket
import wsproto
import wsproto.events
from hypothesis import given
from hypothesis import strategies as st

from arcyou_trio.gateway.sendqueue import HARD_LIMIT_FACTOR, SendQueue
from arcyou_trio.gateway.wireframe import send_frames, text_frame, write_now


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
