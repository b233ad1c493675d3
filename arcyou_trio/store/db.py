"""The trio face of PostgreSQL: a psycopg connection pool driven from worker threads.

Why threads: on this machine the same send transaction ran at ~1,250 tx/s through a sync
``ConnectionPool`` on ``trio.to_thread`` against ~480 tx/s through psycopg's asyncio pool under
trio-asyncio (docs/architecture.md). A :class:`trio.CapacityLimiter` sized to the pool keeps
threads from queueing on the pool.

Cancellation still works: the trio side abandons the thread at once
(``abandon_on_cancel=True``) and asks the server to cancel the running statement, so the thread
gets ``QueryCanceled`` promptly, rolls back and returns its connection to the pool: nothing
leaks. Library exceptions are translated into :mod:`arcyou_trio.errors` here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import psycopg
import psycopg_pool
import trio

from arcyou_trio.config import Settings
from arcyou_trio.errors import StoreError, StoreTimeout, StoreUnavailable
from arcyou_trio.protocol.messages import ChatMessage
from arcyou_trio.store import queries, send_batch
from arcyou_trio.store.queries import Backfill, OutboxRow, Refusal
from arcyou_trio.store.send_batch import NewMessage

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

Conn = psycopg.Connection[Any]


class _Running:
    """The connection a thread is using right now, so that a cancel can reach its query."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: Conn | None = None

    def cancel(self) -> None:
        # Runs on its own thread: cancel_safe() opens a connection to the server. Holding the
        # lock keeps the worker thread from handing the connection to another query meanwhile.
        with self.lock:
            if self.conn is not None:
                try:
                    self.conn.cancel_safe(timeout=2.0)
                except Exception:
                    log.debug("server-side cancel failed", exc_info=True)


class Store:
    """Every database operation the gateway and worker need, as trio-friendly coroutines."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Conn], acquire_timeout_s: float) -> None:
        self._pool = pool
        self._limiter = trio.CapacityLimiter(pool.max_size)
        self._acquire_timeout_s = acquire_timeout_s

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, *, max_size: int | None = None, wait: bool = False
    ) -> AsyncIterator[Store]:
        """Open the pool (not waiting for the server unless ``wait``) and close it at exit."""
        size = max_size or settings.db_pool_size
        pool: psycopg_pool.ConnectionPool[Conn] = psycopg_pool.ConnectionPool(
            settings.database_url,
            min_size=min(2, size),
            max_size=size,
            open=False,
            kwargs={
                "autocommit": True,
                "connect_timeout": 5,
                # None behind PgBouncer < 1.21 in transaction mode (see DB_PREPARE_THRESHOLD).
                "prepare_threshold": settings.db_prepare_threshold,
            },
            name="arcyou",
            reconnect_timeout=0,  # never give up reconnecting: the store comes back by itself
        )
        timeout_s = settings.db_timeout_ms / 1000
        try:
            await trio.to_thread.run_sync(lambda: pool.open(wait=wait, timeout=timeout_s))
        except psycopg_pool.PoolTimeout as exc:
            await trio.to_thread.run_sync(pool.close)
            raise StoreUnavailable("cannot reach PostgreSQL") from exc
        try:
            yield cls(pool, timeout_s)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: pool.close(timeout=timeout_s))

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        running = _Running()

        def work() -> T:
            try:
                with self._pool.connection(timeout=self._acquire_timeout_s) as conn:
                    with running.lock:
                        running.conn = conn
                    try:
                        return fn(conn, *args, **kwargs)
                    finally:
                        with running.lock:
                            running.conn = None
            except psycopg_pool.PoolTimeout as exc:
                raise StoreUnavailable("no database connection available") from exc
            except psycopg.errors.QueryCanceled as exc:
                raise StoreTimeout("database statement cancelled") from exc
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"database unavailable: {exc}".strip()) from exc
            except psycopg.Error as exc:
                raise StoreError(f"database error: {exc}".strip()) from exc

        try:
            return await trio.to_thread.run_sync(
                work, abandon_on_cancel=True, limiter=self._limiter
            )
        except trio.Cancelled:
            trio.lowlevel.start_thread_soon(running.cancel, lambda _outcome: None)
            raise

    # -- gateway ---------------------------------------------------------------------------

    async def join_room(
        self, room_id: uuid.UUID, user_id: uuid.UUID, limit: int, after_id: int | None = None
    ) -> Backfill | None:
        return await self._run(queries.join_room, room_id, user_id, limit, after_id)

    async def send_message(
        self,
        *,
        room_id: uuid.UUID,
        user_id: uuid.UUID,
        type: str,
        content: dict[str, Any],
        temp_id: str | None = None,
        reply_to: int | None = None,
    ) -> ChatMessage | Refusal:
        return await self._run(
            queries.send_message,
            room_id=room_id,
            user_id=user_id,
            type=type,
            content=content,
            temp_id=temp_id,
            reply_to=reply_to,
        )

    async def send_messages(self, items: Sequence[NewMessage]) -> list[ChatMessage | Refusal]:
        """Group commit: all of ``items`` in one transaction (see :mod:`.send_batch`)."""
        return await self._run(send_batch.send_messages, items)

    async def ack(self, room_id: uuid.UUID, user_id: uuid.UUID, last_read: int) -> int | Refusal:
        return await self._run(queries.ack, room_id, user_id, last_read)

    # -- worker ----------------------------------------------------------------------------

    async def claim_outbox(self, worker: str, limit: int, lease_ms: int) -> list[OutboxRow]:
        return await self._run(queries.claim_outbox, worker, limit, lease_ms)

    async def mark_published(self, ids: Sequence[int], worker: str) -> int:
        return await self._run(queries.mark_published, ids, worker)

    async def mark_failed(
        self, delays_ms: Sequence[tuple[int, int]], worker: str, error: str, max_attempts: int
    ) -> int:
        return await self._run(queries.mark_failed, delays_ms, worker, error, max_attempts)

    async def release(self, ids: Sequence[int], worker: str) -> int:
        return await self._run(queries.release, ids, worker)

    # -- rooms and health ------------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        members: Sequence[tuple[uuid.UUID, str]],
        description: str | None = None,
    ) -> uuid.UUID:
        return await self._run(queries.create_room, name, members, description)

    async def add_member(self, room_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
        await self._run(queries.add_member, room_id, user_id, role)

    async def ping(self) -> None:
        await self._run(queries.ping)

    def pool_stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())
