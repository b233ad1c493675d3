"""A lean HTTP/1.1 keep-alive client on trio sockets for the API benchmark.

A general client (httpx) costs about a millisecond of Python per request on this machine,
which the benchmark's own process would spend beside the API's: this one sends a GET and reads
the answer by its Content-Length, nothing more.
"""

from __future__ import annotations

import time

import trio


class HttpConnection:
    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self._stream = stream
        self._host = host
        self._buffer = b""

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        return cls(await trio.open_tcp_stream(host, port), host)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def get(self, path: str, token: str) -> tuple[int, bytes, float]:
        """(status, body, seconds from sending to the whole answer read)."""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self._host}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        await self._stream.send_all(request)
        while b"\r\n\r\n" not in self._buffer:
            await self._fill()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            self._buffer = rest
            await self._fill()
            rest = self._buffer
        body, self._buffer = rest[:length], rest[length:]
        return status, body, time.perf_counter() - start

    async def _fill(self) -> None:
        chunk = await self._stream.receive_some(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk
