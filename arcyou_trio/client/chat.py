"""ChatClient: speaks the seed protocol over one WebSocket.

The server answers requests in order, one reply each, and pushes ``event`` frames in between;
a reader task splits the two streams. :meth:`ChatClient.request` sends a frame and returns the
next reply (requests are serialised by a lock so concurrent callers cannot swap replies).
"""

from __future__ import annotations

import json
import math
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio
import trio_websocket

from arcyou_trio.errors import ArcyouError


class ClientClosed(ArcyouError):
    """The server closed the connection; ``code`` and ``reason`` say why."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed: {code} {reason or ''}".strip())
        self.code = code
        self.reason = reason


def split_ws_url(url: str) -> tuple[str, int, str]:
    """(host, port, resource) of a ``ws://`` or ``wss://`` URL; ``ValueError`` for anything
    else (use :func:`is_tls` for the scheme)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # e.g. a port that is not a number
        raise ValueError(f"expected a ws:// or wss:// URL, got {url!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"expected a ws:// or wss:// URL, got {url!r}")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port or (443 if parts.scheme == "wss" else 80), resource


def is_tls(url: str) -> bool:
    return urlsplit(url).scheme == "wss"


@asynccontextmanager
async def open_websocket(
    url: str, *, max_message_bytes: int = 16 * 1024 * 1024, message_queue_size: int = 1
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A client WebSocket whose TCP stream is closed however the WebSocket ends.

    (trio-websocket's own ``open_websocket_url`` leaves the socket open when the server closed
    the WebSocket first.)
    """
    host, port, resource = split_ws_url(url)
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    if is_tls(url):
        # wss://: TLS terminated by the ingress or proxy in front of the gateways; the
        # certificate is checked against the system's trust store.
        stream = await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=ssl.create_default_context()
        )
    else:
        stream = await trio.open_tcp_stream(host, port)
    async with websocket_over(
        stream,
        host,
        resource,
        max_message_bytes=max_message_bytes,
        message_queue_size=message_queue_size,
    ) as ws:
        yield ws


@asynccontextmanager
async def websocket_over(
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
    host: str,
    resource: str,
    *,
    max_message_bytes: int,
    message_queue_size: int,
    handshake_timeout_s: float = math.inf,
    close_grace_s: float = 2.0,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """The client handshake over a connected ``stream``; at exit the WebSocket is closed (at
    most ``close_grace_s``) and the stream with it."""
    async with stream, trio.open_nursery() as nursery:
        with trio.fail_after(handshake_timeout_s):
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                host,
                resource,
                max_message_size=max_message_bytes,
                message_queue_size=message_queue_size,
            )
        try:
            yield ws
        finally:
            with trio.move_on_after(close_grace_s) as scope:
                scope.shield = True
                await ws.aclose()
            nursery.cancel_scope.cancel()


class ChatClient:
    def __init__(self, ws: trio_websocket.WebSocketConnection, *, queue_size: int = 10_000) -> None:
        self.ws = ws
        self._reply_send, self._reply_recv = trio.open_memory_channel[dict[str, Any]](queue_size)
        self._event_send, self._event_recv = trio.open_memory_channel[dict[str, Any]](queue_size)
        self._lock = trio.Lock()
        self._closed = trio.Event()
        self.user_id: str | None = None

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, *, queue_size: int = 10_000, max_message_bytes: int = 16 * 1024 * 1024
    ) -> AsyncIterator[ChatClient]:
        async with open_websocket(url, max_message_bytes=max_message_bytes) as ws:
            client = cls(ws, queue_size=queue_size)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._read)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()

    async def _read(self) -> None:
        async with self._reply_send, self._event_send:
            while True:
                try:
                    data = await self.ws.get_message()
                except trio_websocket.ConnectionClosed:
                    self._closed.set()
                    return
                frame = json.loads(data)
                if isinstance(frame, dict) and frame.get("op") == "event":
                    await self._event_send.send(frame)
                else:
                    await self._reply_send.send(frame)

    @property
    def close_reason(self) -> trio_websocket.CloseReason | None:
        return self.ws.closed

    async def wait_closed(self) -> trio_websocket.CloseReason:
        """Wait until the server closes the connection; return its code and reason."""
        await self._closed.wait()
        reason = self.ws.closed
        assert reason is not None
        return reason

    def _closed_error(self) -> ClientClosed:
        reason = self.ws.closed
        return ClientClosed(reason.code if reason else None, reason.reason if reason else None)

    async def send_raw(self, data: str | bytes) -> None:
        try:
            await self.ws.send_message(data)
        except trio_websocket.ConnectionClosed:
            raise self._closed_error() from None

    async def next_reply(self) -> dict[str, Any]:
        try:
            return await self._reply_recv.receive()
        except trio.EndOfChannel:
            raise self._closed_error() from None

    async def next_event(self) -> dict[str, Any]:
        try:
            return await self._event_recv.receive()
        except trio.EndOfChannel:
            raise self._closed_error() from None

    def pending_events(self) -> list[dict[str, Any]]:
        """Events received so far and not yet taken, without waiting."""
        out = []
        while True:
            try:
                out.append(self._event_recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return out

    async def request(self, frame: dict[str, Any] | str) -> dict[str, Any]:
        async with self._lock:
            await self.send_raw(frame if isinstance(frame, str) else json.dumps(frame))
            return await self.next_reply()

    async def auth(self, token: str | uuid.UUID) -> dict[str, Any]:
        reply = await self.request({"op": "auth", "token": str(token)})
        if reply.get("success"):
            self.user_id = reply["userId"]
        return reply

    async def join(
        self, room_id: str | uuid.UUID, *, since_message_id: int | None = None
    ) -> dict[str, Any]:
        """Join; with ``since_message_id`` (the newest id already had), resume after it."""
        frame: dict[str, Any] = {"op": "join", "room_id": str(room_id)}
        if since_message_id is not None:
            frame["since_message_id"] = since_message_id
        return await self.request(frame)

    async def send(
        self,
        room_id: str | uuid.UUID,
        text: str,
        *,
        temp_id: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        frame: dict[str, Any] = {"op": "send", "room_id": str(room_id), "content": {"text": text}}
        if temp_id is not None:
            frame["temp_id"] = temp_id
        frame.update(extra)
        return await self.request(frame)

    async def ack(self, room_id: str | uuid.UUID, last_read_message_id: int) -> dict[str, Any]:
        return await self.request(
            {"op": "ack", "room_id": str(room_id), "last_read_message_id": last_read_message_id}
        )
