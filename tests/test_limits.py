"""Per-connection limits over real connections: frame size, send-buffer high water."""

from __future__ import annotations

import json
import uuid

import attrs
import trio
import trio_websocket

from arcyou_trio.client import ChatClient, open_websocket
from arcyou_trio.config import Settings
from tests.conftest import db, make_room, running_system
from tests.helpers import send_one


async def test_oversize_frame_closes_1009_and_stores_nothing(settings: Settings) -> None:
    small = attrs.evolve(settings, max_body_bytes=1024)
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(small) as system, ChatClient.connect(system.url) as client:
        await client.auth(alice)
        big = json.dumps({"op": "send", "room_id": str(room), "content": {"text": "x" * 2000}})
        await client.send_raw(big)
        with trio.fail_after(5):
            assert (await client.wait_closed()).code == 1009
    with db(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone() == (0,)


async def test_oversize_in_bytes_not_just_characters(settings: Settings) -> None:
    small = attrs.evolve(settings, max_body_bytes=1024, max_text_chars=4000)
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(small) as system, ChatClient.connect(system.url) as client:
        await client.auth(alice)
        # 400 characters, 1,200 bytes of UTF-8: over the byte limit.
        frame = json.dumps(
            {"op": "send", "room_id": str(room), "content": {"text": "한" * 400}},
            ensure_ascii=False,
        )
        await client.send_raw(frame)
        with trio.fail_after(5):
            assert (await client.wait_closed()).code == 1009


async def test_slow_reader_is_closed_and_others_keep_receiving(settings: Settings) -> None:
    tight = attrs.evolve(settings, ws_send_high_water_bytes=16 * 1024, outbox_poll_ms=10)
    alice, stalled_user = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, stalled_user)
    async with running_system(tight) as system, ChatClient.connect(system.url) as fast:
        await fast.auth(alice)
        await fast.join(room)
        # A raw client that joins and then never reads again.
        async with open_websocket(system.url) as stalled:
            await stalled.send_message(json.dumps({"op": "auth", "token": str(stalled_user)}))
            await stalled.get_message()
            await stalled.send_message(json.dumps({"op": "join", "room_id": str(room)}))
            await stalled.get_message()
            text = "y" * 3000
            ids = []
            for i in range(400):
                message = await send_one(
                    system.store,
                    room_id=room,
                    user_id=alice,
                    type="text",
                    content={"text": f"{i}{text}"},
                )
                ids.append(message.id)  # type: ignore[union-attr]
            with trio.fail_after(20):
                got = [(await fast.next_event())["message"]["id"] for _ in ids]
            assert got == ids
            assert stalled.closed is None or stalled.closed.code in (1008, 1006)

            # The gateway gave up on the stalled connection instead of buffering without end.
            with trio.fail_after(10):
                while True:
                    try:
                        await stalled.get_message()
                    except trio_websocket.ConnectionClosed as exc:
                        # 1008 when the close frame got through after the frame in flight;
                        # 1006 (no close frame) when the stalled peer did not read even that.
                        assert exc.reason.code in (1008, 1006)
                        break


async def test_backfill_larger_than_high_water_is_delivered_not_fatal(settings: Settings) -> None:
    # Replies and backfill answer the client's own request: they may exceed the high-water
    # mark (which is for live events); the client is slowed down, not disconnected.
    tight = attrs.evolve(settings, ws_send_high_water_bytes=16 * 1024)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    async with running_system(tight) as system:
        ids = []
        for i in range(60):
            message = await send_one(
                system.store,
                room_id=room,
                user_id=alice,
                type="text",
                content={"text": f"{i}" + "z" * 3000},
            )
            ids.append(message.id)  # type: ignore[union-attr]
        async with ChatClient.connect(system.url) as b:
            await b.auth(bob)
            assert (await b.join(room))["success"] is True
            with trio.fail_after(10):
                got = [(await b.next_event())["message"]["id"] for _ in ids]
            assert got == ids
            # Still connected and answering.
            assert (await b.ack(room, ids[-1]))["success"] is True
