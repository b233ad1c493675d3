"""Opening a client WebSocket for the chaos clients: a connect timeout, and optionally a small
receive buffer.

Like :func:`arcyou_trio.client.chat.open_websocket` (whose URL parsing and handshake,
:func:`~arcyou_trio.client.chat.websocket_over`, it reuses), but the TCP connect and the
WebSocket handshake are bounded, and a client that will stop reading can shrink
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

from arcyou_trio.client.chat import split_ws_url, websocket_over

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@asynccontextmanager
async def connect(
    url: str, *, timeout_s: float, rcvbuf: int | None = None
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A client WebSocket to ``url`` (``ws://127.0.0.1:port/``). Raises OSError,
    trio.TooSlowError or trio_websocket.HandshakeError when it cannot be opened in time."""
    host, port, resource = split_ws_url(url)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        with trio.fail_after(timeout_s):
            await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    async with websocket_over(
        trio.SocketStream(sock),
        host,
        resource,
        max_message_bytes=MAX_MESSAGE_BYTES,
        message_queue_size=1,
        handshake_timeout_s=timeout_s,
        close_grace_s=1.0,
    ) as ws:
        yield ws
