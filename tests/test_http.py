"""The HTTP front: /health on the gateway's port, and plain requests that are not upgrades."""

from __future__ import annotations

import trio

from tests.conftest import System
from tests.helpers import http_get


async def test_health_answers_ok(system: System) -> None:
    status, body = await http_get(system.port, "/health")
    assert status == "HTTP/1.1 200 OK"
    assert body == b'{"ok":true}'


async def test_unknown_path_is_404_and_garbage_is_400(system: System) -> None:
    status, _ = await http_get(system.port, "/nope")
    assert status.startswith("HTTP/1.1 404")
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", system.port)
        async with stream:
            await stream.send_all(b"\x00\x01 not http at all\r\n\r\n")
            data = await stream.receive_some(65536)
    assert data.startswith(b"HTTP/1.1 400")
