"""A minimal WebSocket client for the load generator: frames parsed inline, no reader task.

trio-websocket gives every connection a reader task and a memory channel, so each received
message costs two task switches on top of the parsing. With thousands of receiving connections
per generator process that made the generators, not the gateway, the largest CPU consumer of the
fan-out scenarios (docs/benchmarks.md). This client parses the server's frames in the caller's
own ``get_message()`` (server frames are unmasked and this gateway never fragments them; both are
handled anyway), answers pings, and masks what it sends as RFC 6455 requires. It implements only
what the benchmark uses: text messages, ping/pong and close.
"""

from __future__ import annotations

import base64
import os
import struct
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
import trio_websocket

_TEXT, _CONT, _CLOSE, _PING, _PONG = 0x1, 0x0, 0x8, 0x9, 0xA
_HEAD_LIMIT = 16 * 1024


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    key = os.urandom(4)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _mask(payload, key)


class RawWebSocket:
    """``get_message``/``send_message`` like trio-websocket's; raises its ``ConnectionClosed``."""

    def __init__(self, stream: trio.abc.Stream, leftover: bytes = b"") -> None:
        self._stream = stream
        self._buf = bytearray(leftover)
        self._messages: deque[bytes] = deque()
        self._partial = bytearray()
        self._pongs: list[bytes] = []
        self._send_lock = trio.StrictFIFOLock()
        self.closed: trio_websocket.CloseReason | None = None

    async def send_message(self, message: str | bytes) -> None:
        data = message.encode() if isinstance(message, str) else message
        await self._send(client_frame(_TEXT, data))

    async def _send(self, frame: bytes) -> None:
        if self.closed is not None:
            raise trio_websocket.ConnectionClosed(self.closed)
        async with self._send_lock:
            try:
                await self._stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost()
                assert self.closed is not None
                raise trio_websocket.ConnectionClosed(self.closed) from None

    def _lost(self) -> None:
        if self.closed is None:
            self.closed = trio_websocket.CloseReason(1006, "connection lost")

    async def get_message(self) -> bytes:
        """The next text message's UTF-8 bytes (orjson parses them as they are)."""
        while not self._messages:
            if self.closed is not None:
                raise trio_websocket.ConnectionClosed(self.closed)
            try:
                data = await self._stream.receive_some(1 << 16)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._lost()
                continue
            self._buf += data
            self._parse()
            while self._pongs:
                await self._send(client_frame(_PONG, self._pongs.pop(0)))
        return self._messages.popleft()

    def _parse(self) -> None:
        buf = self._buf
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if b1 & 0x80:
                self.closed = trio_websocket.CloseReason(1002, "masked frame from the server")
                return
            if end - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            self._frame(b0 & 0x0F, bool(b0 & 0x80), payload)
        del buf[:pos]

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode in (_TEXT, _CONT):
            if fin and not self._partial:
                self._messages.append(payload)
            else:
                self._partial += payload
                if fin:
                    self._messages.append(bytes(self._partial))
                    self._partial.clear()
        elif opcode == _PING:
            self._pongs.append(payload)
        elif opcode == _CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.closed = trio_websocket.CloseReason(code, payload[2:].decode(errors="replace"))


@asynccontextmanager
async def open_raw_websocket(url: str) -> AsyncIterator[RawWebSocket]:
    """Connect and upgrade (``ws://host:port/path`` only); closes the TCP stream at exit."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await stream.send_all(request.encode())
        head = bytearray()
        while b"\r\n\r\n" not in head:
            data = await stream.receive_some(4096)
            if not data or len(head) > _HEAD_LIMIT:
                raise trio_websocket.HandshakeError("no upgrade response")
            head += data
        response, _, leftover = bytes(head).partition(b"\r\n\r\n")
        status = response.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise trio_websocket.HandshakeError(
                f"upgrade refused: {status.decode(errors='replace')}"
            )
        yield RawWebSocket(stream, leftover)
