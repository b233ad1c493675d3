"""The HTTP API's history, single messages, read marks and search, on real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from arcyou_trio.config import Settings
from arcyou_trio.store import Sent, Store
from tests.api_helpers import as_user, create_room, problem_of, running_api
from tests.conftest import db
from tests.helpers import send_one

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def api(settings: Settings, store: Store) -> AsyncIterator[str]:
    async with running_api(settings, store) as base_url:
        yield base_url


async def fill(store: Store, room: uuid.UUID, user: uuid.UUID, texts: list[str]) -> list[Sent]:
    out = []
    for text in texts:
        sent = await send_one(store, room_id=room, user_id=user, content={"text": text})
        assert isinstance(sent, Sent)
        out.append(sent)
    return out


async def test_pages_back_and_forward_without_overlap_or_gap(api: str, store: Store) -> None:
    alice = uuid.uuid4()
    async with as_user(api, alice) as a:
        rid = uuid.UUID((await create_room(a))["id"])
        sent = await fill(store, rid, alice, [f"m{i}" for i in range(120)])
        newest = (await a.get(f"/v1/rooms/{rid}/messages")).json()
        assert [m["seq"] for m in newest["items"]] == list(range(71, 121))
        assert newest["has_more"] is True
        assert newest["items"][-1] == sent[-1].message.wire()  # the event's message object
        # Back with before_seq, while new messages arrive: the pages still meet exactly.
        seqs = [m["seq"] for m in newest["items"]]
        before = seqs[0]
        more = True
        while more:
            await fill(store, rid, alice, ["late"])
            page = (
                await a.get(f"/v1/rooms/{rid}/messages", params={"before_seq": before, "limit": 30})
            ).json()
            got = [m["seq"] for m in page["items"]]
            assert got == sorted(got) and got[-1] == before - 1
            seqs = got + seqs
            before, more = got[0], page["has_more"]
        assert seqs == list(range(1, 121))
        # Forward from after_seq up to the newest.
        forward: list[int] = []
        after = 0
        while True:
            page = (
                await a.get(f"/v1/rooms/{rid}/messages", params={"after_seq": after, "limit": 45})
            ).json()
            forward += [m["seq"] for m in page["items"]]
            if not page["has_more"]:
                break
            after = forward[-1]
        # Every message, the late ones (one per page read back) included.
        assert forward == list(range(1, len(forward) + 1)) and len(forward) > 120
        # Both bounds: the messages strictly between them.
        window = (
            await a.get(f"/v1/rooms/{rid}/messages", params={"after_seq": 10, "before_seq": 15})
        ).json()
        assert [m["seq"] for m in window["items"]] == [11, 12, 13, 14]
        assert window["has_more"] is False


async def test_one_message_and_what_is_not_found(api: str, store: Store) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with as_user(api, alice) as a, as_user(api, bob) as b:
        mine = uuid.UUID((await create_room(a, "a", bob))["id"])
        other = uuid.UUID((await create_room(b, "b"))["id"])
        [here] = await fill(store, mine, alice, ["here"])
        [there] = await fill(store, other, bob, ["there"])
        got = await a.get(f"/v1/rooms/{mine}/messages/{here.id}")
        assert got.status_code == 200 and got.json() == here.message.wire()
        problem_of(await a.get(f"/v1/rooms/{mine}/messages/{there.id}"), 404)  # another room
        problem_of(await a.get(f"/v1/rooms/{other}/messages/{there.id}"), 404)  # not a member
        problem_of(await a.get(f"/v1/rooms/{other}/messages"), 404)
        with db(store_url(store)) as conn:
            conn.execute(
                "UPDATE arcyou_chat_messages SET deleted_at = now() WHERE id = %s", (here.id,)
            )
        problem_of(await a.get(f"/v1/rooms/{mine}/messages/{here.id}"), 404)
        assert (await a.get(f"/v1/rooms/{mine}/messages")).json()["items"] == []


def store_url(store: Store) -> str:
    return str(store._pool.conninfo)


async def test_read_marks_move_forward_only(api: str, store: Store) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with as_user(api, alice) as a, as_user(api, bob) as b:
        rid = uuid.UUID((await create_room(a, "r", bob))["id"])
        sent = await fill(store, rid, alice, ["1", "2", "3", "4"])
        read = await b.post(f"/v1/rooms/{rid}/read", json={"message_id": sent[2].id})
        assert read.json() == {"last_read_message_id": sent[2].id, "unread_count": 1}
        back = await b.post(f"/v1/rooms/{rid}/read", json={"message_id": sent[0].id})
        assert back.json() == {"last_read_message_id": sent[2].id, "unread_count": 1}
        ahead = problem_of(
            await b.post(f"/v1/rooms/{rid}/read", json={"message_id": sent[3].id + 1000}), 422
        )
        assert ahead["errors"][0]["field"] == "message_id"
        members = (await a.get(f"/v1/rooms/{rid}/members")).json()["items"]
        assert {m["user_id"]: m["last_read_message_id"] for m in members}[str(bob)] == sent[2].id
        # The WebSocket ack and the API share the rule: an ack to an older id moves nothing.
        assert await store.ack(rid, bob, sent[1].id) == sent[2].id
        outsider = uuid.uuid4()
        async with as_user(api, outsider) as o:
            problem_of(await o.post(f"/v1/rooms/{rid}/read", json={"message_id": 1}), 404)


async def search(client: Any, q: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/search/messages", params={"q": q, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_search_english_words_ranked_with_highlight(api: str, store: Store) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with as_user(api, alice) as a, as_user(api, bob) as b:
        mine = uuid.UUID((await create_room(a, "mine"))["id"])
        theirs = uuid.UUID((await create_room(b, "theirs"))["id"])
        await fill(
            store,
            mine,
            alice,
            [
                "the deploy failed again",
                "deploy deploy deploy: the deploy script <b>broke</b>",
                "lunch at noon",
                "Deploying is a different word",
            ],
        )
        await fill(store, theirs, bob, ["deploy in a room alice is not in"])
        found = await search(a, "deploy")
        texts = [hit["message"]["content"]["text"] for hit in found["items"]]
        assert len(texts) == 2 and texts[0].startswith("deploy deploy")  # most matches first
        assert all(hit["room_id"] == str(mine) for hit in found["items"])
        top = found["items"][0]["highlight"]
        assert "<mark>deploy</mark>" in top and "&lt;b&gt;broke" in top
        assert "<b>" not in top  # the text is escaped: only <mark> is markup
        assert (await search(a, "DEPLOY"))["items"] != []  # case does not matter
        assert (await search(a, "lunch noon"))["items"][0]["message"]["content"]["text"] == (
            "lunch at noon"
        )
        assert (await search(a, "deploy", room_id=str(theirs)))["items"] == []
        assert len((await search(b, "deploy"))["items"]) == 1


async def test_search_korean_inside_longer_words(api: str, store: Store) -> None:
    alice = uuid.uuid4()
    async with as_user(api, alice) as a:
        rid = uuid.UUID((await create_room(a, "방"))["id"])
        await fill(
            store,
            rid,
            alice,
            [
                "오늘 회의실에서 만나요",
                "배포가 실패했습니다",
                "내일 회의는 취소되었습니다",
                "점심 메뉴 추천해 주세요",
            ],
        )
        found = await search(a, "회의")
        texts = {hit["message"]["content"]["text"] for hit in found["items"]}
        assert texts == {"오늘 회의실에서 만나요", "내일 회의는 취소되었습니다"}
        assert all("<mark>회의</mark>" in hit["highlight"] for hit in found["items"])
        three = await search(a, "실패했")  # three syllables inside a longer word
        assert [h["message"]["content"]["text"] for h in three["items"]] == ["배포가 실패했습니다"]
        assert (await search(a, "없는말"))["items"] == []
        # LIKE wildcards in a query are plain characters.
        assert (await search(a, "회%"))["items"] == []


async def test_search_pages(api: str, store: Store) -> None:
    alice = uuid.uuid4()
    async with as_user(api, alice) as a:
        rid = uuid.UUID((await create_room(a))["id"])
        sent = await fill(store, rid, alice, [f"needle number {i}" for i in range(25)])
        ids: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 10}
            if cursor:
                params["cursor"] = cursor
            page = await search(a, "needle", **params)
            ids += [hit["message"]["id"] for hit in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(ids) == sorted(s.id for s in sent) and len(set(ids)) == 25
