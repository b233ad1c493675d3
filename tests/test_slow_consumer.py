"""A reader that stops reading must never delay the other members of its room."""

from __future__ import annotations

import json
import statistics
import uuid

import attrs
import trio
import trio_websocket

from arcyou_trio.client import ChatClient, open_websocket
from arcyou_trio.config import Settings
from tests.conftest import make_room, running_system
from tests.helpers import send_one

MESSAGES = 1000


async def test_stalled_reader_is_closed_and_fast_readers_stay_fast(settings: Settings) -> None:
    tight = attrs.evolve(settings, ws_send_high_water_bytes=64 * 1024, outbox_poll_ms=5)
    sender, stalled_user, *readers = [uuid.uuid4() for _ in range(5)]
    room = make_room(settings.database_url, sender, stalled_user, *readers)
    sent_at: dict[int, float] = {}
    arrivals: list[tuple[int, float]] = []
    async with running_system(tight) as system, trio.open_nursery() as nursery:
        fast_clients = []
        for user in readers:
            client = await nursery.start(_reader_client, system.url, user, room)
            fast_clients.append(client)
        async with open_websocket(system.url) as stalled:
            # Joins, then never reads again.
            await stalled.send_message(json.dumps({"op": "auth", "token": str(stalled_user)}))
            await stalled.get_message()
            await stalled.send_message(json.dumps({"op": "join", "room_id": str(room)}))
            await stalled.get_message()

            done = trio.Event()
            remaining = {"n": MESSAGES * len(readers)}

            async def collect(client: ChatClient) -> None:
                while True:
                    event = await client.next_event()
                    # The event can arrive before send_message() has returned to us.
                    arrivals.append((event["message"]["id"], trio.current_time()))
                    remaining["n"] -= 1
                    if remaining["n"] == 0:
                        done.set()

            for client in fast_clients:
                nursery.start_soon(collect, client)
            text = "s" * 1000
            for i in range(MESSAGES):
                started = trio.current_time()
                message = await send_one(
                    system.store,
                    room_id=room,
                    user_id=sender,
                    type="text",
                    content={"text": f"{i} {text}"},
                )
                sent_at[message.id] = started  # type: ignore[union-attr]
                if i % 20 == 19:
                    await trio.sleep(0.01)  # a steady stream rather than one burst
            with trio.fail_after(30):
                await done.wait()

            # The gateway closed the stalled reader instead of buffering for it.
            with trio.fail_after(10):
                while True:
                    try:
                        await stalled.get_message()
                    except trio_websocket.ConnectionClosed as exc:
                        assert exc.reason.code in (1008, 1006)
                        break
        nursery.cancel_scope.cancel()
    latencies = sorted(t - sent_at[message_id] for message_id, t in arrivals)
    p99 = latencies[int(len(latencies) * 0.99)]
    print(
        f"fast readers: {len(latencies)} deliveries, p50 {statistics.median(latencies) * 1000:.1f}"
        f" ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )
    assert len(latencies) == MESSAGES * len(readers)
    # Generous for a 2-core machine running PostgreSQL, Redis and the test in one place; a
    # fan-out that waited on the stalled socket would stall here for good (or seconds).
    assert p99 < 1.0 and latencies[-1] < 3.0


async def _reader_client(
    url: str, user: uuid.UUID, room: uuid.UUID, *, task_status: trio.TaskStatus[ChatClient]
) -> None:
    async with ChatClient.connect(url) as client:
        await client.auth(user)
        assert (await client.join(room))["success"] is True
        task_status.started(client)
        await trio.sleep_forever()
