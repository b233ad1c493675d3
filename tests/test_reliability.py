"""Reliability guarantees end to end: idempotent send, resume, ordered gap-free delivery.

Events are published by hand here (no worker) where the test needs Redis to misbehave: out of
order, twice, or not at all.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio

from arcyou_trio.bus import Bus, Channels
from arcyou_trio.client import ChatClient
from arcyou_trio.config import Settings
from arcyou_trio.devstack.servers import LocalPostgres
from arcyou_trio.store import OutboxRow, apply_migrations
from arcyou_trio.worker.loop import encode_event
from tests.conftest import make_room, running_system
from tests.helpers import redis_server, send_one, wait_for, wait_healthy


async def events_until(client: ChatClient, last_id: int, timeout_s: float = 10) -> list[Any]:
    """Events received until (and including) the one for message ``last_id``."""
    got = []
    with trio.fail_after(timeout_s):
        while True:
            event = await client.next_event()
            got.append(event)
            if event["message"]["id"] == last_id:
                return got


def ids(events: list[Any]) -> list[int]:
    return [e["message"]["id"] for e in events]


def outbox_payloads(settings: Settings, room: uuid.UUID) -> list[str]:
    """The room's events exactly as the worker would publish them, in outbox order."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, room_id, type, payload, attempts FROM outbox WHERE room_id = %s"
            " ORDER BY id",
            (room,),
        ).fetchall()
    return [encode_event(OutboxRow(*row), "2026-01-01T00:00:00.000Z") for row in rows]


async def test_retried_send_returns_the_original_and_is_delivered_once(
    settings: Settings,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    async with (
        running_system(settings) as system,
        ChatClient.connect(system.url) as a,
        ChatClient.connect(system.url) as b,
    ):
        await a.auth(alice)
        await b.auth(bob)
        await b.join(room)
        first = await a.send(room, "hello", temp_id="t-1")
        # The reply was "lost": the client retries, even with another connection.
        async with ChatClient.connect(system.url) as a2:
            await a2.auth(alice)
            again = await a2.send(room, "hello", temp_id="t-1")
        assert again == first
        assert first["success"] is True
        marker = await a.send(room, "after", temp_id="t-2")
        got = await events_until(b, marker["message_id"])
        assert ids(got) == [first["message_id"], marker["message_id"]]
        # Another user's identical temp_id is a different message.
        other = await b.send(room, "hello", temp_id="t-1")
        assert other["message_id"] != first["message_id"]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        count = conn.execute(
            "SELECT count(*) FROM arcyou_chat_messages WHERE room_id = %s", (room,)
        ).fetchone()
        outbox = conn.execute("SELECT count(*) FROM outbox WHERE room_id = %s", (room,)).fetchone()
    assert count == (3,)
    assert outbox == (3,)


async def test_join_resumes_after_since_message_id(settings: Settings) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    async with running_system(settings) as system, ChatClient.connect(system.url) as a:
        await a.auth(alice)
        async with ChatClient.connect(system.url) as b:
            await b.auth(bob)
            await b.join(room)
            sent = [(await a.send(room, f"m{i}"))["message_id"] for i in range(3)]
            seen = ids(await events_until(b, sent[-1]))
            assert seen == sent
            # b leaves without acking anything.
        missed = [(await a.send(room, f"n{i}"))["message_id"] for i in range(3)]
        async with ChatClient.connect(system.url) as b:
            await b.auth(bob)
            assert (await b.join(room, since_message_id=seen[-1]))["success"] is True
            got = await events_until(b, missed[-1])
            assert ids(got) == missed
            assert [e["message"]["seq"] for e in got] == [4, 5, 6]
        async with ChatClient.connect(system.url) as b:
            # Without a position: the seed's backfill after the read mark (nothing acked).
            await b.auth(bob)
            await b.join(room)
            assert ids(await events_until(b, missed[-1])) == sent + missed
        async with ChatClient.connect(system.url) as b:
            await b.auth(bob)
            await b.join(room, since_message_id=0)  # "I have nothing"
            assert ids(await events_until(b, missed[-1])) == sent + missed


async def test_out_of_order_repeated_and_lost_events_reach_the_client_in_order_once(
    settings: Settings,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    channel = Channels(settings.pubsub_mode, settings.redis_channel_prefix).for_room(str(room))
    async with (
        running_system(settings, workers=0) as system,
        ChatClient.connect(system.url) as b,
    ):
        await b.auth(bob)
        await b.join(room)
        sent = []
        for i in range(5):
            result = await send_one(
                system.store, room_id=room, user_id=alice, type="text", content={"text": f"m{i}"}
            )
            sent.append(result.message.id)  # type: ignore[union-attr]
        p = outbox_payloads(settings, room)
        # 2 before 1, 2 again, 1, then 5 with 3 and 4 never published at all.
        await system.bus.publish_many([(channel, p[1]), (channel, p[1]), (channel, p[0])])
        await system.bus.publish_many([(channel, p[4]), (channel, p[0])])
        got = await events_until(b, sent[-1])
        assert ids(got) == sent
        assert [e["message"]["seq"] for e in got] == [1, 2, 3, 4, 5]
        # 3 and 4 came from the database after the gap wait.
        assert [e["source"] for e in got[2:4]] == ["backfill", "backfill"]
        await system.bus.publish_many([(channel, p[2]), (channel, p[3])])  # late: dropped
        marker = await send_one(
            system.store, room_id=room, user_id=alice, type="text", content={"text": "marker"}
        )
        await system.bus.publish_many([(channel, outbox_payloads(settings, room)[-1])])
        assert ids(await events_until(b, marker.message.id)) == [marker.message.id]  # type: ignore[union-attr]


async def test_messages_published_while_the_subscription_was_down_are_filled(
    settings: Settings, tmp_path: Path
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    with redis_server(tmp_path) as server:
        own = attrs.evolve(settings, redis_url=server.url)
        async with (
            running_system(own, workers=0) as system,
            ChatClient.connect(system.url) as a,
            ChatClient.connect(system.url) as b,
        ):
            await a.auth(alice)
            await b.auth(bob)
            await b.join(room)
            await trio.to_thread.run_sync(server.stop)
            # Sends are stored with Redis down; no worker publishes them, ever.
            sent = [(await a.send(room, f"m{i}"))["message_id"] for i in range(3)]
            assert all(isinstance(i, int) for i in sent)
            server.start()  # same port
            # The gateway resubscribes and reads what its rooms missed from the database.
            got = await events_until(b, sent[-1], timeout_s=20)
            assert ids(got) == sent


async def test_sends_are_accepted_with_redis_down_and_delivered_when_it_returns(
    settings: Settings, tmp_path: Path
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    with redis_server(tmp_path) as server:
        own = attrs.evolve(settings, redis_url=server.url, outbox_poll_ms=50)
        async with (
            running_system(own) as system,
            ChatClient.connect(system.url) as a,
            ChatClient.connect(system.url) as b,
        ):
            await a.auth(alice)
            await b.auth(bob)
            await b.join(room)
            await trio.to_thread.run_sync(server.stop)
            sent = [(await a.send(room, f"m{i}"))["message_id"] for i in range(5)]
            server.start()
            got = await events_until(b, sent[-1], timeout_s=30)
            assert ids(got) == sent
            marker = await a.send(room, "live again")
            assert ids(await events_until(b, marker["message_id"])) == [marker["message_id"]]


async def test_bus_publishes_what_the_store_wrote(settings: Settings) -> None:
    """The live event carries seq (what the gateway orders by)."""
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with Bus.open(settings.redis_url):
        pass
    async with running_system(settings) as system, ChatClient.connect(system.url) as a:
        await a.auth(alice)
        await a.join(room)
        sent = await a.send(room, "x")
        event = (await events_until(a, sent["message_id"]))[-1]
        assert event["message"]["seq"] == 1
        assert event["source"] == "live"


async def test_postgres_down_sends_fail_fast_and_everything_recovers(
    settings: Settings, tmp_path: Path
) -> None:
    """With PostgreSQL gone, sends fail with a clear error and quickly; when it is back, the
    gateway and the worker carry on by themselves."""
    server = LocalPostgres(tmp_path / "pg")
    server.start()
    try:
        url = server.create_database("chaos")
        await trio.to_thread.run_sync(apply_migrations, url)
        alice, bob = uuid.uuid4(), uuid.uuid4()
        room = make_room(url, alice, bob)
        own = attrs.evolve(settings, database_url=url, db_timeout_ms=2000, outbox_poll_ms=50)
        async with (
            running_system(own) as system,
            ChatClient.connect(system.url) as a,
            ChatClient.connect(system.url) as b,
        ):
            await a.auth(alice)
            await b.auth(bob)
            await b.join(room)
            before = await a.send(room, "before")
            assert ids(await events_until(b, before["message_id"])) == [before["message_id"]]

            await trio.to_thread.run_sync(server.shutdown, "immediate")
            with trio.fail_after(4):  # DB_TIMEOUT_MS=2000: no hang past it
                down = await a.send(room, "while down", temp_id="d-1")
            assert down["success"] is False
            assert down["error"] == "Service temporarily unavailable"
            assert down["reason"] in ("database_unavailable", "timeout")
            assert down["temp_id"] == "d-1"
            start = trio.current_time()
            again = await a.send(room, "while down", temp_id="d-1")
            assert again["success"] is False
            assert again["reason"] == "database_unavailable"
            assert trio.current_time() - start < 1.0  # fails fast once known down
            await wait_healthy(system.port)  # the gateway itself stays up

            server.spawn()  # same port and data, from this (the main) thread
            await trio.to_thread.run_sync(server.wait_ready)

            replies = []

            async def accepted() -> bool:
                replies.append(await a.send(room, "while down", temp_id="d-1"))  # a retry
                return bool(replies[-1]["success"])

            await wait_for(accepted, within_s=20, what="sends accepted again")
            # (After an immediate shutdown the id sequence may jump: ids are not contiguous.)
            got = await events_until(b, replies[-1]["message_id"], timeout_s=20)
            assert [e["message"]["content"]["text"] for e in got] == ["while down"]
        with psycopg.connect(url, autocommit=True) as conn:
            texts = conn.execute(
                "SELECT content->>'text' FROM arcyou_chat_messages ORDER BY seq"
            ).fetchall()
        assert texts == [("before",), ("while down",)]  # retried, stored once
    finally:
        server.stop()


async def test_a_message_never_published_reaches_joined_connections_by_the_periodic_resync(
    settings: Settings,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    resyncing = attrs.evolve(settings, resync_interval_ms=200)
    async with (
        running_system(resyncing, workers=0) as system,
        ChatClient.connect(system.url) as b,
    ):
        await b.auth(bob)
        await b.join(room)
        # Stored, but no worker ever publishes it and nothing else happens in the room.
        sent = await send_one(
            system.store, room_id=room, user_id=alice, type="text", content={"text": "silent"}
        )
        event = (await events_until(b, sent.message.id, timeout_s=5))[-1]  # type: ignore[union-attr]
        assert event["source"] == "backfill"
        assert event["message"]["seq"] == 1


async def test_a_subscribe_redis_never_confirms_fails_the_join_step_in_time() -> None:
    """The hub bounds a join's wait for its perconv subscription itself (BusTimeout, reason
    "timeout"); the gateway applies no timeout of its own."""
    from arcyou_trio.config import PubSubMode
    from arcyou_trio.errors import BusTimeout
    from arcyou_trio.gateway.rooms import RoomHub
    from arcyou_trio.protocol import outcomes

    class NeverConfirms:
        async def subscribe(self, channel: str) -> None:
            await trio.sleep_forever()

    class Member:
        def deliver_live(self, room_id: uuid.UUID, seq: int, frame: bytes) -> None:
            raise AssertionError("no events expected")

        def resync(self, room_id: uuid.UUID, last_seq: int, *, wait: bool = False) -> None:
            raise AssertionError("no resync expected")

    hub = RoomHub(
        Channels(PubSubMode.PERCONV, "test:"),
        NeverConfirms(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        page_size=10,
        subscribe_timeout_s=0.2,
    )
    room, member = uuid.uuid4(), Member()
    start = trio.current_time()
    with trio.fail_after(5):
        try:
            await hub.add(room, member)
        except BusTimeout as exc:
            error = outcomes.unavailable("join", exc, room_id=room)
        else:
            raise AssertionError("add() returned without a confirmed subscription")
    assert 0.2 <= trio.current_time() - start < 2
    assert (error.error, error.reason, error.room_id) == (
        "Service temporarily unavailable",
        "timeout",
        str(room),
    )
    hub.remove(room, member)
    assert hub.local_rooms() == 0
