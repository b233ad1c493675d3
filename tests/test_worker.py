"""The outbox worker against real PostgreSQL and Redis: publish, retry, dead, reclaim, races."""

from __future__ import annotations

import uuid
from pathlib import Path

import attrs
import redis
import trio

from arcyou_trio.bus import Bus, Channels
from arcyou_trio.client import ChatClient
from arcyou_trio.config import Settings
from arcyou_trio.store import Store
from tests.conftest import db, make_room, running_system
from tests.helpers import redis_server, send_one, wait_for


def global_channel(settings: Settings) -> str:
    return Channels(settings.pubsub_mode, settings.redis_channel_prefix).global_channel


def outbox_rows(url: str) -> list[tuple[int, str, int, str | None, str | None]]:
    with db(url) as conn:
        return conn.execute(
            "SELECT id, status::text, attempts, error, locked_by FROM outbox ORDER BY id"
        ).fetchall()


async def send_direct(store: Store, room: uuid.UUID, user: uuid.UUID, text: str) -> int:
    message = await send_one(store, room_id=room, user_id=user, type="text", content={"text": text})
    assert not isinstance(message, type(None))
    return message.id  # type: ignore[union-attr]


async def test_unreachable_redis_backs_off_then_marks_dead(settings: Settings) -> None:
    dead_redis = attrs.evolve(settings, redis_url="redis://127.0.0.1:1/0", max_attempts=3)
    user = uuid.uuid4()
    room = make_room(settings.database_url, user)
    async with running_system(dead_redis, gateway=False) as system:
        await send_direct(system.store, room, user, "lost in the void")
        worker = system.workers[0]

        async def attempts_seen() -> bool:
            rows = await trio.to_thread.run_sync(outbox_rows, settings.database_url)
            return rows[0][2] >= 1

        await wait_for(attempts_seen, what="first failed attempt")
        (_, status, attempts, error, locked_by) = outbox_rows(settings.database_url)[0]
        assert status in {"pending", "dead"} and attempts >= 1
        assert error and "redis" in error.lower()
        assert locked_by is None

        async def dead() -> bool:
            rows = await trio.to_thread.run_sync(outbox_rows, settings.database_url)
            return rows[0][1] == "dead"

        await wait_for(dead, what="row to be dead")
        (_, status, attempts, error, _) = outbox_rows(settings.database_url)[0]
        assert attempts == 3 and error

        # The row is dead once mark_failed commits; the worker counts it when that call returns.
        async def counted() -> bool:
            return worker.stats.dead == 1

        await wait_for(counted, what="worker to count the dead row")
        assert worker.stats.published == 0


async def test_backoff_schedules_next_attempt(settings: Settings) -> None:
    slow = attrs.evolve(
        settings,
        redis_url="redis://127.0.0.1:1/0",
        backoff_base_ms=60_000,
        backoff_cap_ms=120_000,
        max_attempts=5,
    )
    user = uuid.uuid4()
    room = make_room(settings.database_url, user)
    async with running_system(slow, gateway=False) as system:
        await send_direct(system.store, room, user, "later")

        async def failed_once() -> bool:
            return (await trio.to_thread.run_sync(outbox_rows, settings.database_url))[0][2] == 1

        await wait_for(failed_once, what="one failed attempt")
    with db(settings.database_url) as conn:
        row = conn.execute(
            "SELECT status::text, attempts, extract(epoch FROM next_attempt_at - now()) FROM outbox"
        ).fetchone()
    assert row is not None
    status, attempts, wait_s = row
    # One attempt, rescheduled about BACKOFF_BASE_MS ahead rather than retried at once.
    assert (status, attempts) == ("pending", 1)
    assert 50 < float(wait_s) <= 60


async def test_recovers_when_redis_returns(settings: Settings, tmp_path: Path) -> None:
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    with redis_server(tmp_path) as server:
        flaky = attrs.evolve(settings, redis_url=server.url, max_attempts=1000)
        async with running_system(flaky) as system, ChatClient.connect(system.url) as client:
            await client.auth(alice)
            await client.join(room)
            server.stop()
            sent = await client.send(room, "while redis is down")
            assert sent["success"] is True  # storing does not need Redis

            async def failing() -> bool:
                rows = await trio.to_thread.run_sync(outbox_rows, settings.database_url)
                return rows[0][2] >= 2

            await wait_for(failing, what="failed publish attempts")
            # Same port again; start() returns once it answers PING. Started from this (main)
            # thread on purpose: children die with the thread that started them (PDEATHSIG),
            # and trio's worker threads come and go.
            server.start()

            async def published() -> bool:
                rows = await trio.to_thread.run_sync(outbox_rows, settings.database_url)
                return rows[0][1] == "published"

            await wait_for(published, what="the worker to publish once redis is back")

            # Pub/Sub is fire-and-forget: an event published before the gateway resubscribed is
            # not replayed by Redis. The gateway must come back by itself, though.
            def gateway_subscribed() -> bool:
                client = redis.Redis.from_url(server.url)
                channel = global_channel(flaky)
                return dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) > 0

            async def resubscribed() -> bool:
                return await trio.to_thread.run_sync(gateway_subscribed)

            await wait_for(resubscribed, what="the gateway to resubscribe")
            after = await client.send(room, "after redis came back")
            with trio.fail_after(5):
                while (event := await client.next_event())["message"]["id"] != after["message_id"]:
                    assert event["message"]["id"] == sent["message_id"]


async def test_stale_lease_is_reclaimed(settings: Settings) -> None:
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(settings, workers=0) as system:
        message_id = await send_direct(system.store, room, alice, "stranded")
    # A worker claimed the row and died: its lease ran out a second ago.
    with db(settings.database_url) as conn:
        conn.execute(
            "UPDATE outbox SET status = 'in_progress', locked_by = 'killed-worker',"
            " locked_until = now() - interval '1 second'"
        )
    async with running_system(settings) as system, ChatClient.connect(system.url) as client:
        await client.auth(alice)
        join = await client.join(room)
        assert join["success"] is True
        # Delivered by backfill (nothing was read yet) and then published live by the reclaim.
        with trio.fail_after(5):
            backfill = await client.next_event()
        assert backfill["source"] == "backfill" and backfill["message"]["id"] == message_id

        async def published() -> bool:
            rows = await trio.to_thread.run_sync(outbox_rows, settings.database_url)
            return rows[0][1] == "published"

        await wait_for(published, what="reclaimed row to be published")
        assert outbox_rows(settings.database_url)[0][4] is None


async def test_live_lease_is_not_stolen(settings: Settings) -> None:
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(settings, workers=0) as system:
        await send_direct(system.store, room, alice, "owned")
        with db(settings.database_url) as conn:
            conn.execute(
                "UPDATE outbox SET status = 'in_progress', locked_by = 'busy-worker',"
                " locked_until = now() + interval '1 hour'"
            )
        claimed = await system.store.claim_outbox("thief", 10, 30_000)
        assert claimed == []


async def test_two_workers_never_publish_a_row_twice(settings: Settings) -> None:
    users = [uuid.uuid4() for _ in range(4)]
    rooms = [make_room(settings.database_url, *users) for _ in range(4)]
    total = 400
    seen: list[int] = []
    fast = attrs.evolve(settings, outbox_batch_size=16, outbox_poll_ms=5)
    async with running_system(fast, workers=2, gateway=False) as system:
        async with Bus.open(settings.redis_url) as bus, bus.subscriber() as sub:
            all_seen = trio.Event()

            async def listen() -> None:
                import json

                async for _channel, data in sub.messages():
                    seen.append(json.loads(data)["message"]["id"])
                    if len(seen) >= total:
                        all_seen.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                await sub.subscribe(global_channel(settings))

                async def sender(k: int) -> None:
                    for i in range(total // 8):
                        await send_direct(system.store, rooms[k % 4], users[k % 4], f"{k}-{i}")

                async with trio.open_nursery() as senders:
                    for k in range(8):
                        senders.start_soon(sender, k)
                with trio.fail_after(20):
                    await all_seen.wait()
                nursery.cancel_scope.cancel()

        async def all_marked() -> bool:
            rows = await trio.to_thread.run_sync(outbox_rows, settings.database_url)
            return all(row[1] == "published" for row in rows)

        await wait_for(all_marked, what="every row marked published")
        assert sum(w.stats.published for w in system.workers) == total
        assert all(w.stats.published > 0 for w in system.workers), "both workers should work"
    assert len(seen) == total and len(set(seen)) == total
    statuses = {row[1] for row in outbox_rows(settings.database_url)}
    assert statuses == {"published"}


async def test_worker_wakes_on_notify_not_on_poll(settings: Settings) -> None:
    # With a one-minute poll, only the send transaction's NOTIFY can wake the worker in time.
    slow_poll = attrs.evolve(settings, outbox_poll_ms=60_000)
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(slow_poll) as system, ChatClient.connect(system.url) as client:
        await client.auth(alice)
        await client.join(room)
        worker = system.workers[0]

        async def listening() -> bool:
            return worker.listener is not None and worker.listener.connected

        await wait_for(listening, what="the worker's LISTEN connection")
        for i in range(5):
            sent = await client.send(room, f"now {i}")
            with trio.fail_after(2):
                event = await client.next_event()
            assert event["message"]["id"] == sent["message_id"]
        assert worker.listener is not None and worker.listener.notifications >= 5
