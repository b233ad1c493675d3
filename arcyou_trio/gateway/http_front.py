"""The gateway's HTTP front on ``trio.serve_tcp``: plain requests and WebSocket upgrades.

trio-websocket alone answers a plain ``GET`` with 400, but operators need ``GET /health`` on the
same port. So each TCP connection's request head is read and parsed here (h11); upgrade requests
are handed to trio-websocket together with the bytes already read, everything else gets a small
HTTP/1.1 response and the connection is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import h11
import trio
import trio_websocket

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 10.0
_REASONS = {
    503: b"Service Unavailable",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    431: b"Request Header Fields Too Large",
}


class PrefixedStream(trio.abc.Stream):
    """A stream that first replays bytes already received, then reads the socket."""

    def __init__(self, inner: trio.SocketStream, prefix: bytes) -> None:
        self._inner = inner
        self._prefix = prefix
        self.socket = inner.socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            return chunk
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __repr__(self) -> str:
        try:
            host, port, *_ = self.socket.getpeername()
        except OSError:
            return "<closed>"
        return f"{host}:{port}"


WebSocketHandler = Callable[[trio_websocket.WebSocketConnection, str], Awaitable[None]]
HealthCheck = Callable[[], tuple[int, bytes]]


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    buf = bytearray()
    with trio.move_on_after(HEAD_TIMEOUT_S):
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD_BYTES:
                return bytes(buf)
            chunk = await stream.receive_some(4096)
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)
    return None


async def _respond(
    stream: trio.SocketStream,
    status: int,
    body: bytes,
    *,
    head_only: bool = False,
    extra_headers: list[tuple[str, str]] | None = None,
) -> None:
    conn = h11.Connection(h11.SERVER)
    # h11 needs to have seen a request before it will produce a response.
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "close"),
        *(extra_headers or []),
    ]
    parts = [
        conn.send(
            h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))
        ),
        b"" if head_only else conn.send(h11.Data(data=body)),
        conn.send(h11.EndOfMessage()),
    ]
    data = b"".join(p for p in parts if p)
    with trio.move_on_after(5):
        await stream.send_all(data)


def make_handler(
    *,
    on_websocket: WebSocketHandler,
    health: HealthCheck,
    max_message_bytes: int,
    admit: Callable[[], bool] = lambda: True,
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """Build the per-TCP-connection handler for ``trio.serve_tcp``."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                peer = repr(PrefixedStream(stream, b""))
                head = await _read_head(stream)
                if head is None:
                    return
                if len(head) > MAX_HEAD_BYTES:
                    await _respond(stream, 431, b'{"ok":false,"error":"request head too large"}')
                    return
                parser = h11.Connection(h11.SERVER)
                parser.receive_data(head)
                try:
                    request = parser.next_event()
                except h11.RemoteProtocolError:
                    await _respond(stream, 400, b'{"ok":false,"error":"bad request"}')
                    return
                if not isinstance(request, h11.Request):
                    await _respond(stream, 400, b'{"ok":false,"error":"bad request"}')
                    return
                headers = {k.lower(): v.lower() for k, v in request.headers}
                if headers.get(b"upgrade") == b"websocket":
                    if not admit():
                        # Refused politely before the handshake: the client may retry later.
                        await _respond(
                            stream,
                            503,
                            b'{"ok":false,"error":"server busy, retry later"}',
                            extra_headers=[("retry-after", "1")],
                        )
                        return
                    # This frame lives as long as the WebSocket: keep nothing of the HTTP
                    # parse alive (about 3 KB per idle connection).
                    del parser, request, headers
                    await _serve_upgrade(stream, head, peer, on_websocket, max_message_bytes)
                    return
                path = request.target.split(b"?", 1)[0]
                if request.method in (b"GET", b"HEAD") and path == b"/health":
                    status, body = health()
                    await _respond(stream, status, body, head_only=request.method == b"HEAD")
                else:
                    await _respond(stream, 404, b'{"ok":false,"error":"not found"}')
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    return handle


async def _serve_upgrade(
    stream: trio.SocketStream,
    head: bytes,
    peer: str,
    on_websocket: WebSocketHandler,
    max_message_bytes: int,
) -> None:
    async with trio.open_nursery() as nursery:
        request = await trio_websocket.wrap_server_stream(
            nursery,
            PrefixedStream(stream, head),
            message_queue_size=1,
            max_message_size=max_message_bytes,
        )
        try:
            ws = await request.accept()
        except trio_websocket.ConnectionClosed:
            nursery.cancel_scope.cancel()
            return
        await on_websocket(ws, peer)
        nursery.cancel_scope.cancel()
