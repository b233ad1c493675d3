"""Membership changes made through the HTTP API, seen live over real WebSockets: a removed
member stops getting the room at once, an added one can join at once, a closed room refuses
everything, and the system messages come in seq order with the chat."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

from arcyou_trio.client import ChatClient
from arcyou_trio.config import PubSubMode
from tests.api_helpers import as_user, create_room, running_api
from tests.conftest import System

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.parametrize(
        "pubsub_mode",
        [PubSubMode.GLOBAL, PubSubMode.PERCONV],
        ids=["global", "perconv"],
        indirect=True,
    ),
]


async def next_event(client: ChatClient) -> dict[str, Any]:
    with trio.fail_after(10):
        return await client.next_event()


async def test_removed_member_stops_receiving_at_once(system: System) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with (
        running_api(system.settings, system.store) as api,
        as_user(api, alice) as http,
        ChatClient.connect(system.url) as a,
        ChatClient.connect(system.url) as b,
    ):
        rid = (await create_room(http, "r", bob))["id"]
        for client, user in ((a, alice), (b, bob)):
            await client.auth(user)
            assert (await client.join(rid))["success"] is True
        removed = await http.delete(f"/v1/rooms/{rid}/members/{bob}")
        assert removed.status_code == 204
        for client in (a, b):
            event = await next_event(client)
            assert event["message"]["type"] == "system"
            assert event["message"]["content"] == {
                "event": "member.removed",
                "user_id": str(bob),
                "by": str(alice),
            }
            assert event["source"] == "live"
        # After the removal nothing more of the room reaches bob's connection.
        assert (await a.send(rid, "after"))["success"] is True
        after = await next_event(a)
        assert after["message"]["content"] == {"text": "after"}
        # Were bob still subscribed, "after" would be on his socket before this reply.
        send = await b.send(rid, "let me talk")
        assert send["success"] is False and send["error"] == "Forbidden: not a member"
        ack = await b.ack(rid, after["message"]["id"])
        assert ack["success"] is False and ack["error"] == "Forbidden: not a member"
        join = await b.join(rid)
        assert join["success"] is False and join["error"] == "Forbidden: not a member"
        assert b.pending_events() == []


async def test_added_member_joins_at_once_and_sees_order(system: System) -> None:
    alice, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with (
        running_api(system.settings, system.store) as api,
        as_user(api, alice) as http,
        ChatClient.connect(system.url) as a,
        ChatClient.connect(system.url) as c,
    ):
        rid = (await create_room(http, "r"))["id"]
        await a.auth(alice)
        await a.join(rid)
        await c.auth(carol)
        assert (await c.join(rid))["success"] is False
        added = await http.put(f"/v1/rooms/{rid}/members/{carol}")
        assert added.status_code == 201
        assert (await c.join(rid))["success"] is True
        # Chat and changes interleaved: carol sees one stream, seq after seq.
        await a.send(rid, "one")
        await http.put(f"/v1/rooms/{rid}/members/{bob}")
        await a.send(rid, "two")
        await http.patch(f"/v1/rooms/{rid}", json={"name": "renamed"})
        await a.send(rid, "three")
        seen = [await next_event(c) for _ in range(6)]
        assert [e["message"]["seq"] for e in seen] == [1, 2, 3, 4, 5, 6]
        kinds = [
            e["message"]["content"].get("event", e["message"]["content"].get("text")) for e in seen
        ]
        assert kinds == [
            "member.added",
            "one",
            "member.added",
            "two",
            "room.updated",
            "three",
        ]
        # The first came as backfill (the join read it), the rest live.
        assert [e["source"] for e in seen[1:]] == ["live"] * 5


async def test_closed_room_refuses_everything(system: System) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with (
        running_api(system.settings, system.store) as api,
        as_user(api, alice) as http,
        ChatClient.connect(system.url) as a,
        ChatClient.connect(system.url) as b,
    ):
        rid = (await create_room(http, "r", bob))["id"]
        for client, user in ((a, alice), (b, bob)):
            await client.auth(user)
            await client.join(rid)
        assert (await a.send(rid, "last words"))["success"] is True
        for client in (a, b):
            assert (await next_event(client))["message"]["content"] == {"text": "last words"}
        assert (await http.delete(f"/v1/rooms/{rid}")).status_code == 204
        for client in (a, b):
            closed = await next_event(client)
            assert closed["message"]["content"]["event"] == "room.closed"
            send = await client.send(rid, "anyone?")
            assert send == {
                "op": "send",
                "success": False,
                "error": "Forbidden: room is closed",
                "room_id": rid,
            }
            ack = await client.ack(rid, closed["message"]["id"])
            assert ack["error"] == "Forbidden: room is closed"
            join = await client.join(rid)
            assert join["error"] == "Forbidden: room is closed"
            assert client.pending_events() == []
