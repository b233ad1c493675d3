"""Opening a client WebSocket for the chaos clients: a connect timeout, and optionally a small
receive buffer.

Like :func:`arcyou_trio.client.chat.open_websocket` (whose URL parsing it reuses), but the TCP
connect and the WebSocket handshake are bounded, and a client that will stop reading can shrink
its socket's receive buffer first: the kernel then holds little of what the gateway sends, so a
pause soon shows on the gateway's side as a slow consumer instead of vanishing into buffers.
The trio-websocket message queue holds one message, so a reader that stops reading stops the
socket too.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio_websocket

from arcyou_trio.client.chat import _split_ws_url

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@asynccontextmanager
async def connect(
    url: str, *, timeout_s: float, rcvbuf: int | None = None
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A client WebSocket to ``url`` (``ws://127.0.0.1:port/``). Raises OSError,
    trio.TooSlowError or trio_websocket.HandshakeError when it cannot be opened in time."""
    host, port, resource = _split_ws_url(url)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        with trio.fail_after(timeout_s):
            await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    stream = trio.SocketStream(sock)
    async with stream, trio.open_nursery() as nursery:
        with trio.fail_after(timeout_s):
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                host,
                resource,
                max_message_size=MAX_MESSAGE_BYTES,
                message_queue_size=1,
            )
        try:
            yield ws
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await ws.aclose()
            nursery.cancel_scope.cancel()
