"""Server-to-client WebSocket frames built once, and written many at a time.

A frame the server sends is not masked (RFC 6455 §5.1) and this gateway negotiates no extension,
so the bytes of a text frame depend only on its payload: a live event is framed once per fan-out
and the same ``bytes`` object is queued to every member (:func:`json_frame`; a database page is
framed once for every connection that asked for it, :func:`backfill_frames`). A connection's
writer then hands
everything queued to the socket in one ``send_all`` instead of one WebSocket message per frame.

trio-websocket has no public call for either, so :func:`send_frames` does what its
``WebSocketConnection._send`` does (the same stream lock, the same error handling) with bytes we
framed ourselves. Sending whole, final frames never touches wsproto's state: it only tracks
fragmented messages and the closing handshake, and we check the close state first.

:func:`write_now` is the fast path under both: when nothing is queued or being written for a
connection, a frame is written straight to its (non-blocking) socket from the task that produced
it, with no task switch at all; only what the socket does not take at once goes through the
connection's writer task. During a fan-out that is one ``write(2)`` per member.

Assumptions about trio-websocket internals (private members of ``WebSocketConnection``; this
module is the only place in ``arcyou_trio`` that touches them):

- ``_stream``: the very stream the connection was made on (the gateway's ``PrefixedStream``,
  whose ``socket`` is the connection's non-blocking socket); bytes given to its ``send_all`` go
  to the peer as they are.
- ``_stream_lock``: a :class:`trio.StrictFIFOLock` that trio-websocket holds around every write
  to ``_stream`` (messages, pings, pongs, the close frame), so holding it orders our writes with
  its own, and while it is locked someone is writing.
- ``_close_reason``: ``None`` while the connection is open; a (truthy) ``CloseReason`` from the
  moment closing starts, from either side, before the close frame is written; ``ws.closed``
  returns it. Nothing may be written once it is set.
- ``_abort_web_socket()``: a coroutine method taking no arguments, called (as trio-websocket's
  ``_send`` does) after a write failed, with ``_stream_lock`` held. It does no I/O and takes no
  lock, so it returns without waiting on the peer; afterwards ``_close_reason`` is set (1006
  unless a reason was already there) and ``get_message``/``send_message`` raise
  ``ConnectionClosed``. It does not close the stream (``trio.serve_tcp`` does once the
  connection's handler returns).

trio-websocket is pinned in pyproject.toml; tests/test_wireframe.py checks each of these
assumptions against the installed version (one test each).
"""

from __future__ import annotations

import os
import struct
import time
import uuid
from collections.abc import Sequence
from typing import Any

import trio
import trio_websocket

from arcyou_trio.protocol import codec, messages
from arcyou_trio.protocol.messages import ChatMessage

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload


def json_frame(obj: dict[str, Any]) -> bytes:
    """A reply or event as one text frame."""
    return text_frame(codec.dumps_bytes(obj))


def backfill_frames(room_id: uuid.UUID, page: Sequence[ChatMessage]) -> list[tuple[int, bytes]]:
    """Messages read from the database as ``(seq, event frame)``, marked ``backfill``."""
    now = codec.iso_from_epoch_ms(time.time() * 1000)
    room = str(room_id)
    return [
        (
            m.seq,
            json_frame(
                messages.message_event(
                    room, m.wire(), source=messages.SOURCE_BACKFILL, timestamp=now
                )
            ),
        )
        for m in page
    ]


async def send_frames(ws: trio_websocket.WebSocketConnection, data: bytes) -> None:
    """Write already-framed bytes (one or more whole frames) to the peer.

    Raises :class:`trio_websocket.ConnectionClosed` like ``send_message`` does.
    """
    if ws._close_reason:
        raise trio_websocket.ConnectionClosed(ws._close_reason)
    async with ws._stream_lock:
        try:
            await ws._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await ws._abort_web_socket()
            assert ws._close_reason is not None
            raise trio_websocket.ConnectionClosed(ws._close_reason) from None


def write_now(ws: trio_websocket.WebSocketConnection, data: bytes) -> int | None:
    """Write what the socket takes of ``data`` right now, without waiting.

    Returns the bytes written (0 when the socket buffer is full), or None when this path is not
    open: the connection is closing, a task is writing through trio-websocket (which holds its
    stream lock), or the socket failed (the writer task meets the error the regular way). The
    caller must make sure none of its own frames are queued or in flight.
    """
    if ws._close_reason or ws._stream_lock.locked():
        return None
    sock = getattr(ws._stream, "socket", None)
    if sock is None:
        return None
    try:
        return os.write(sock.fileno(), data)
    except BlockingIOError:
        return 0
    except OSError:
        return None
