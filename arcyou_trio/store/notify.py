"""LISTEN for new outbox rows, so workers publish within milliseconds instead of a poll period.

The send transaction NOTIFYs ``arcyou_outbox`` when it commits. A worker keeps one direct
connection (``DATABASE_LISTEN_URL``; PgBouncer's transaction pooling cannot hold a LISTEN) in a
thread that waits for notifications and wakes the trio side. Losing that connection is not an
error the worker has to handle: it keeps polling at ``OUTBOX_POLL_MS`` while the listener
reconnects in the background.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import trio

from arcyou_trio.store.outbox import OUTBOX_CHANNEL

log = logging.getLogger(__name__)

RECONNECT_S = 1.0
POLL_S = 0.25  # how often the listener thread checks whether it should stop


class OutboxListener:
    """Trio side: ``await wait()`` returns once a notification arrived since the last wait."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._pending = False
        self.notifications = 0
        self.connected = False

    def _notified(self) -> None:  # runs on the trio thread
        self.notifications += 1
        self._pending = True
        self._event.set()

    async def wait(self) -> None:
        if not self._pending:
            await self._event.wait()
        self._pending = False
        self._event = trio.Event()


def _listen(
    url: str, listener: OutboxListener, token: trio.lowlevel.TrioToken, stop: threading.Event
) -> None:
    """The listener thread: (re)connect, LISTEN, forward notifications, until ``stop``."""
    first = True
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                token.run_sync_soon(setattr, listener, "connected", True)
                if not first:
                    log.info("outbox listener reconnected")
                    # Rows may have been committed while we were away.
                    token.run_sync_soon(listener._notified)
                first = False
                while not stop.is_set():
                    for _ in conn.notifies(timeout=POLL_S):
                        token.run_sync_soon(listener._notified)
        except psycopg.Error as exc:
            token.run_sync_soon(setattr, listener, "connected", False)
            if stop.is_set():
                return
            log.warning(
                "outbox listener lost its connection (%s); polling meanwhile",
                " ".join(str(exc).split()),
            )
            stop.wait(RECONNECT_S)
        except trio.RunFinishedError:
            return


@asynccontextmanager
async def listen_outbox(url: str) -> AsyncIterator[OutboxListener]:
    """Run a LISTEN thread for the duration of the block."""
    listener = OutboxListener()
    stop = threading.Event()
    thread = threading.Thread(
        target=_listen,
        args=(url, listener, trio.lowlevel.current_trio_token(), stop),
        name="arcyou-outbox-listener",
        daemon=True,
    )
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        # The thread notices within POLL_S; never block the trio loop on it.
        with trio.CancelScope(shield=True), trio.move_on_after(POLL_S * 4 + 1):
            await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
