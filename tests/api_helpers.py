"""The HTTP API in a test: a real server on a loopback port, and a client per user."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio

from arcyou_trio.api import serve_api
from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.config import Settings
from arcyou_trio.store import Store


@asynccontextmanager
async def running_api(settings: Settings, store: Store) -> AsyncIterator[str]:
    """Serve the API on a free port for the block; its base URL."""
    settings = attrs.evolve(settings, api_port=0)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_api, settings, store, verifier_from_settings(settings))
        yield binds[0]
        nursery.cancel_scope.cancel()


def as_user(base_url: str, user: uuid.UUID | str | None) -> httpx.AsyncClient:
    """A client that sends ``Authorization: Bearer <user>`` (dev mode: the token is the id)."""
    headers = {} if user is None else {"Authorization": f"Bearer {user}"}
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10)


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem document of an error response, checked for status and shape."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


async def create_room(
    client: httpx.AsyncClient, name: str = "room", *members: uuid.UUID
) -> dict[str, Any]:
    response = await client.post(
        "/v1/rooms", json={"name": name, "member_ids": list(map(str, members))}
    )
    assert response.status_code == 201, response.text
    room: dict[str, Any] = response.json()
    return room
