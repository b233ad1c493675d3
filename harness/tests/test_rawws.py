"""The load generator's minimal WebSocket client against a real gateway."""

from __future__ import annotations

import uuid

import attrs
import orjson
import pytest
import trio
import trio_websocket

from arcyou_harness.common.rawws import RawWebSocket, _mask, client_frame, open_raw_websocket
from arcyou_trio.config import Settings
from tests.fixtures import make_room, running_system


async def request(ws: RawWebSocket, frame: dict[str, object]) -> dict[str, object]:
    await ws.send_message(orjson.dumps(frame))
    while True:
        reply = orjson.loads(await ws.get_message())
        if reply.get("op") != "event":
            return dict(reply)


async def test_chat_and_answer_pings_through_a_real_gateway(settings: Settings) -> None:
    # Pings every 50 ms, 200 ms to answer: a client that did not answer would be closed.
    pinging = attrs.evolve(settings, ws_ping_interval_ms=50, ws_ping_timeout_ms=200)
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(pinging) as system, open_raw_websocket(system.url) as ws:
        with trio.fail_after(10):
            assert (await request(ws, {"op": "auth", "token": str(alice)}))["success"] is True
            assert (await request(ws, {"op": "join", "room_id": str(room)}))["success"] is True
            big = "é" * 40_000  # > 65,535 bytes: the 8-byte length form, both ways
            for text in ["hi", "x" * 300, big[:2000]]:
                sent = await request(
                    ws, {"op": "send", "room_id": str(room), "content": {"text": text}}
                )
                event = orjson.loads(await ws.get_message())
                assert event["message"]["id"] == sent["message_id"]
                assert event["message"]["content"]["text"] == text
            with trio.move_on_after(0.6):  # several pings go by; a waiting reader answers them
                await ws.get_message()
            sent = await request(ws, {"op": "send", "room_id": str(room), "content": {"text": "z"}})
            assert sent["success"] is True
            assert ws.closed is None


async def test_close_from_the_server_raises_connection_closed(settings: Settings) -> None:
    tight = attrs.evolve(settings, max_body_bytes=100)
    async with running_system(tight) as system, open_raw_websocket(system.url) as ws:
        await ws.send_message(b"x" * 200)
        with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed) as info:
            await ws.get_message()
        assert info.value.reason.code == 1009


def test_client_frames_are_masked_and_unmask_back() -> None:
    payload = bytes(range(256)) * 300
    frame = client_frame(0x1, payload)
    assert frame[0] == 0x81 and frame[1] == 0x80 | 127
    key = frame[10:14]
    assert _mask(frame[14:], key) == payload
    assert _mask(b"", key) == b""
