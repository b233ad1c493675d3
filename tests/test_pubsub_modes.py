"""PUBSUB_MODE behaviour seen from Redis itself: which channels a gateway subscribes to."""

from __future__ import annotations

import uuid

import attrs
import redis
import trio

from arcyou_trio.bus import Channels
from arcyou_trio.client import ChatClient
from arcyou_trio.config import PubSubMode, Settings
from tests.conftest import make_room, running_system
from tests.helpers import wait_for


def subscribed_channels(settings: Settings) -> set[str]:
    client = redis.Redis.from_url(settings.redis_url)
    pattern = f"{settings.redis_channel_prefix}*"
    return {c.decode() for c in client.pubsub_channels(pattern)}


def pattern_count(settings: Settings) -> int:
    return int(redis.Redis.from_url(settings.redis_url).pubsub_numpat())


async def channels_now(settings: Settings) -> set[str]:
    return await trio.to_thread.run_sync(subscribed_channels, settings)


async def test_perconv_subscribes_only_rooms_with_local_members(settings: Settings) -> None:
    perconv = attrs.evolve(settings, pubsub_mode=PubSubMode.PERCONV)
    channels = Channels(PubSubMode.PERCONV, perconv.redis_channel_prefix)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room_a = make_room(settings.database_url, alice, bob)
    room_b = make_room(settings.database_url, bob)
    patterns_before = await trio.to_thread.run_sync(pattern_count, perconv)
    async with running_system(perconv) as system:
        assert await channels_now(perconv) == set()
        async with ChatClient.connect(system.url) as a:
            await a.auth(alice)
            await a.join(room_a)
            # The join returned only after Redis confirmed the subscription.
            assert await channels_now(perconv) == {channels.for_room(str(room_a))}
            async with ChatClient.connect(system.url) as b:
                await b.auth(bob)
                await b.join(room_a)
                await b.join(room_b)
                assert await channels_now(perconv) == {
                    channels.for_room(str(room_a)),
                    channels.for_room(str(room_b)),
                }
                sent = await b.send(room_b, "only bob hears this")
                with trio.fail_after(5):
                    assert (await b.next_event())["message"]["id"] == sent["message_id"]
                assert a.pending_events() == []

            async def only_a() -> bool:
                return await channels_now(perconv) == {channels.for_room(str(room_a))}

            # Bob left: room B has no local member any more and is unsubscribed.
            await wait_for(only_a, what="room B to be unsubscribed")
            # Never a conv:* pattern subscription.
            assert await trio.to_thread.run_sync(pattern_count, perconv) == patterns_before

        async def none_left() -> bool:
            return await channels_now(perconv) == set()

        await wait_for(none_left, what="all rooms to be unsubscribed")


async def test_global_mode_uses_one_channel(settings: Settings) -> None:
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with running_system(settings) as system, ChatClient.connect(system.url) as a:
        await a.auth(alice)
        await a.join(room)
        channels = Channels(PubSubMode.GLOBAL, settings.redis_channel_prefix)
        assert await channels_now(settings) == {channels.global_channel}
        assert channels.global_channel.endswith("chat:message")
