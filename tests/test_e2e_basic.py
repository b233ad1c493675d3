"""End to end over real WebSockets: auth, join, backfill, send, live events, ack, /health."""

from __future__ import annotations

import uuid

import attrs
import pytest
import trio

from arcyou_trio.client import ChatClient
from arcyou_trio.config import PubSubMode, Settings
from tests.conftest import System, db, make_room, running_system

pytestmark = pytest.mark.parametrize(
    "pubsub_mode", [PubSubMode.GLOBAL, PubSubMode.PERCONV], ids=["global", "perconv"], indirect=True
)


async def test_send_reaches_sender_and_other_member(system: System) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(system.settings.database_url, alice, bob)
    async with ChatClient.connect(system.url) as a, ChatClient.connect(system.url) as b:
        assert await a.auth(alice) == {"op": "auth", "success": True, "userId": str(alice)}
        assert (await b.auth(bob))["success"] is True
        assert await a.join(room) == {"op": "join", "success": True, "room_id": str(room)}
        assert (await b.join(room))["success"] is True
        reply = await a.send(room, "hello", temp_id="t-1")
        assert reply["success"] is True and reply["temp_id"] == "t-1"
        with trio.fail_after(5):
            for client in (a, b):
                event = await client.next_event()
                assert event["op"] == "event"
                assert event["type"] == "message.created"
                assert event["roomId"] == str(room)
                assert event["source"] == "live"
                assert event["message"]["id"] == reply["message_id"]
                assert event["message"]["user_id"] == str(alice)
                assert event["message"]["content"] == {"text": "hello"}
                assert event["message"]["temp_id"] == "t-1"
                assert event["message"]["created_at"].endswith("Z")


async def test_auth_failure_and_ops_before_auth(system: System) -> None:
    async with ChatClient.connect(system.url) as c:
        assert await c.join(uuid.uuid4()) == {
            "op": "join",
            "success": False,
            "error": "Unauthorized",
        }
        assert await c.auth("not-a-uuid") == {
            "op": "auth",
            "success": False,
            "error": "Unauthorized",
        }
        assert (await c.auth(uuid.uuid4()))["success"] is True
        again = await c.auth(uuid.uuid4())
        assert again["success"] is False and again["error"] == "already authenticated"


async def test_join_forbidden_for_non_member(system: System) -> None:
    room = make_room(system.settings.database_url, uuid.uuid4())
    async with ChatClient.connect(system.url) as c:
        await c.auth(uuid.uuid4())
        reply = await c.join(room)
        assert reply["success"] is False and reply["error"] == "Forbidden: not a member"
        missing = await c.join(uuid.uuid4())
        assert missing["error"] == "Forbidden: not a member"


async def test_non_member_send_and_ack_refused_and_sees_nothing(system: System) -> None:
    alice, mallory = uuid.uuid4(), uuid.uuid4()
    room = make_room(system.settings.database_url, alice)
    async with ChatClient.connect(system.url) as a, ChatClient.connect(system.url) as m:
        await a.auth(alice)
        await m.auth(mallory)
        await a.join(room)
        assert (await m.join(room))["success"] is False
        send = await m.send(room, "let me in", temp_id="x")
        assert send == {
            "op": "send",
            "success": False,
            "error": "Forbidden: not a member",
            "room_id": str(room),
            "temp_id": "x",
        }
        ack = await m.ack(room, 1)
        assert ack["success"] is False and ack["error"] == "Forbidden: not a member"
        sent = await a.send(room, "private")
        with trio.fail_after(5):
            assert (await a.next_event())["message"]["id"] == sent["message_id"]
        # The member's own event has arrived, so the same fan-out has passed the intruder.
        assert m.pending_events() == []
    with db(system.settings.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM arcyou_chat_messages WHERE user_id = %s", (mallory,)
        ).fetchone()
        assert row == (0,)


async def test_backfill_after_read_mark_in_order_and_limited(system: System) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(system.settings.database_url, alice, bob)
    limit = system.settings.backfill_limit
    async with ChatClient.connect(system.url) as a:
        await a.auth(alice)
        ids = [(await a.send(room, f"m{i}"))["message_id"] for i in range(12)]
    assert ids == sorted(ids)
    async with ChatClient.connect(system.url) as b:
        await b.auth(bob)
        assert (await b.ack(room, ids[4]))["last_read_message_id"] == ids[4]
        assert (await b.join(room))["success"] is True
        with trio.fail_after(5):
            got = [await b.next_event() for _ in range(min(limit, 7))]
        assert [e["message"]["id"] for e in got] == ids[5:]
        assert all(e["source"] == "backfill" for e in got)
        assert [e["message"]["content"]["text"] for e in got] == [f"m{i}" for i in range(5, 12)]


async def test_ack_only_moves_forward(system: System) -> None:
    alice = uuid.uuid4()
    room = make_room(system.settings.database_url, alice)
    async with ChatClient.connect(system.url) as a:
        await a.auth(alice)
        first = (await a.send(room, "one"))["message_id"]
        second = (await a.send(room, "two"))["message_id"]
        assert await a.ack(room, second) == {
            "op": "ack",
            "success": True,
            "room_id": str(room),
            "last_read_message_id": second,
        }
        back = await a.ack(room, first)
        assert back["success"] is True and back["last_read_message_id"] == second
        ahead = await a.ack(room, second + 1000)
        assert ahead["success"] is False
    with db(system.settings.database_url) as conn:
        row = conn.execute(
            "SELECT last_read_message_id FROM arcyou_chat_members WHERE user_id = %s", (alice,)
        ).fetchone()
        assert row == (second,)


async def test_backfill_is_read_in_pages_of_backfill_limit_oldest_first(settings: Settings) -> None:
    # BACKFILL_LIMIT is the page size: the join answers with the first page, the rest follows
    # page by page, so a joiner misses nothing (docs/reliability.md).
    capped = attrs.evolve(settings, backfill_limit=3)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(settings.database_url, alice, bob)
    async with running_system(capped) as system:
        async with ChatClient.connect(system.url) as a:
            await a.auth(alice)
            ids = [(await a.send(room, f"m{i}"))["message_id"] for i in range(8)]
        async with ChatClient.connect(system.url) as b:
            await b.auth(bob)
            assert (await b.join(room))["success"] is True
            with trio.fail_after(10):
                got = [(await b.next_event()) for _ in ids]
        assert [e["message"]["id"] for e in got] == ids
        assert [e["message"]["seq"] for e in got] == list(range(1, 9))
        # The first page answers the join; an event may come live if the worker published it
        # after the join subscribed.
        assert all(e["source"] == "backfill" for e in got[:3])
