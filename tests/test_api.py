"""The HTTP API process: served on trio by hypercorn, health, the OpenAPI document, its docs
page, a graceful stop, and a taken port reported in one line."""

from __future__ import annotations

import json
import socket

import attrs
import trio

from arcyou_trio.api import serve_api
from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.config import Settings
from arcyou_trio.store import Store
from tests.test_cli_errors import run, taken_port
from tests.test_entrypoints import base_env


async def http_get(port: int, path: str) -> tuple[str, bytes]:
    """One HTTP/1.1 request with ``Connection: close``: (status line, body)."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return " ".join(head.split(b"\r\n")[0].decode().split()[:2]), body  # no reason phrase


def port_of(binds: list[str]) -> int:
    return int(binds[0].rsplit(":", 1)[1])


async def test_health_openapi_and_docs(settings: Settings, store: Store) -> None:
    settings = attrs.evolve(settings, api_port=0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                serve_api, settings, store, verifier_from_settings(settings)
            )
            port = port_of(binds)
            status, body = await http_get(port, "/health")
            assert status == "HTTP/1.1 200" and json.loads(body) == {"ok": True}
            status, body = await http_get(port, "/openapi.json")
            document = json.loads(body)
            assert status == "HTTP/1.1 200" and document["openapi"].startswith("3.")
            assert "/health" in document["paths"]
            status, body = await http_get(port, "/docs")
            assert status == "HTTP/1.1 200" and b"swagger" in body.lower()
            status, _ = await http_get(port, "/nope")
            assert status == "HTTP/1.1 404"
            nursery.cancel_scope.cancel()


async def test_stopping_ends_the_server(settings: Settings, store: Store) -> None:
    settings = attrs.evolve(settings, api_port=0, shutdown_grace_ms=1000)
    stopping = trio.Event()
    verifier = verifier_from_settings(settings)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve_api, settings, store, verifier, stopping)
            stopping.set()
        # serve_api returned by itself: the port is free again.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port_of(binds)))


async def test_api_on_a_taken_port(database_url: str, redis_url: str) -> None:
    with taken_port() as port:
        env = base_env(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            HOST="127.0.0.1",
            API_PORT=str(port),
            JWT_PUBLIC_KEY="dev-placeholder",
        )
        line = await run("arcyou_trio", "api", env=env)
    assert f"127.0.0.1:{port}" in line and "API_PORT" in line
