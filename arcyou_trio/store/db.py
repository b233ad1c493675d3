"""The trio face of PostgreSQL: a psycopg connection pool driven from worker threads.

Why threads: on this machine the same send transaction ran at ~1,250 tx/s through a sync
``ConnectionPool`` on ``trio.to_thread`` against ~480 tx/s through psycopg's asyncio pool under
trio-asyncio (docs/architecture.md). A :class:`trio.CapacityLimiter` sized to the pool keeps
threads from queueing on the pool.

Every call is bounded by ``DB_TIMEOUT_MS``: past it the call raises :class:`StoreTimeout`, so
callers need no timeout of their own. Cancellation (that timeout, or the caller's) still works:
the trio side abandons the thread at once (``abandon_on_cancel=True``) and asks the server to
cancel the running statement, so the thread gets ``QueryCanceled`` promptly, rolls back and
returns its connection to the pool: nothing leaks. Library exceptions are translated into
:mod:`arcyou_trio.errors` here.
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
from arcyou_trio.store import directory, history, messages, outbox, rooms, send
from arcyou_trio.store.directory import Cursor
from arcyou_trio.store.rows import (
    Backfill,
    MemberView,
    OutboxRow,
    Page,
    Refusal,
    RoomView,
    SearchHit,
    Sent,
)
from arcyou_trio.store.send import NewMessage

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

Conn = psycopg.Connection[Any]

#: While PostgreSQL is unreachable, how long calls fail at once before one tries again.
DOWN_RETRY_S = 1.0
#: How long that one call waits for a pooled connection.
PROBE_ACQUIRE_S = 0.5
#: Waiting for a pooled connection may take this share of a call's DB_TIMEOUT_MS.
ACQUIRE_SHARE = 0.8


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

    def __init__(self, pool: psycopg_pool.ConnectionPool[Conn], timeout_s: float) -> None:
        self._pool = pool
        self._limiter = trio.CapacityLimiter(pool.max_size)
        self._timeout_s = timeout_s
        # Waiting for a pooled connection gives up a little before the call's own timeout, so an
        # unreachable server shows as StoreUnavailable (and makes calls fail fast) rather than
        # as a timeout.
        self._acquire_timeout_s = ACQUIRE_SHARE * timeout_s
        # Fail fast while PostgreSQL is down: after a failure to reach it, calls fail at once
        # for DOWN_RETRY_S; then one call at a time tries again (the others keep failing fast).
        self._down_until = 0.0
        self._probing = False

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
            # Give up a failed connection attempt at once instead of retrying with a growing
            # backoff (1, 2, 4 ... s): the next request that finds no connection makes the pool
            # try again, so the store reconnects as soon as PostgreSQL is back.
            reconnect_timeout=0,
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

    @property
    def timeout_s(self) -> float:
        """How long one call may take (``DB_TIMEOUT_MS``) before it raises StoreTimeout."""
        return self._timeout_s

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` on a pool thread, within ``DB_TIMEOUT_MS``."""
        with trio.move_on_after(self._timeout_s):
            return await self._run_checked(fn, *args, **kwargs)
        # The statement was cancelled on the server too (_run_thread).
        raise StoreTimeout(f"database call took longer than {self._timeout_s * 1000:.0f} ms")

    async def _run_checked(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._down_until:
            if self._probing or trio.current_time() < self._down_until:
                raise StoreUnavailable("database unavailable (reconnecting)")
            self._probing = True
            try:
                # Drop pooled connections that died with the server before trying one.
                await trio.to_thread.run_sync(self._pool.check, abandon_on_cancel=True)
                # A short wait for a connection: with the server back, asking is what makes the
                # pool connect again (it gave up its own attempts: reconnect_timeout=0).
                result = await self._run_now(fn, *args, acquire_s=PROBE_ACQUIRE_S, **kwargs)
            finally:
                self._probing = False
            self._down_until = 0.0
            log.info("database reachable again")
            return result
        return await self._run_now(fn, *args, **kwargs)

    async def _run_now(
        self, fn: Callable[..., T], *args: Any, acquire_s: float | None = None, **kwargs: Any
    ) -> T:
        try:
            return await self._run_thread(fn, acquire_s, *args, **kwargs)
        except StoreTimeout:
            raise  # a slow statement, not an unreachable server
        except StoreUnavailable:
            if not self._down_until:
                log.warning("database unreachable; failing fast for %.1f s at a time", DOWN_RETRY_S)
            self._down_until = trio.current_time() + DOWN_RETRY_S
            raise

    async def _run_thread(
        self, fn: Callable[..., T], acquire_s: float | None, *args: Any, **kwargs: Any
    ) -> T:
        running = _Running()
        acquire_timeout_s = self._acquire_timeout_s if acquire_s is None else acquire_s

        def work() -> T:
            try:
                with self._pool.connection(timeout=acquire_timeout_s) as conn:
                    with running.lock:
                        running.conn = conn
                    try:
                        return fn(conn, *args, **kwargs)
                    finally:
                        with running.lock:
                            running.conn = None
            except psycopg_pool.PoolTimeout as exc:
                if self._pool.get_stats().get("pool_size", 0) > 0:
                    # Connections exist but all are busy: a slow database, not a lost one.
                    raise StoreTimeout("no database connection free in time") from exc
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
        self,
        room_id: uuid.UUID,
        user_id: uuid.UUID,
        limit: int,
        since_message_id: int | None = None,
    ) -> Backfill | Refusal:
        """Membership check and the first page after the read mark (or ``since_message_id``),
        from one snapshot; NOT_MEMBER or ROOM_CLOSED instead when so."""
        return await self._run(messages.join_room, room_id, user_id, limit, since_message_id)

    async def messages_after(self, room_id: uuid.UUID, after_seq: int, limit: int) -> Page:
        """Up to ``limit`` messages of the room with seq > ``after_seq``, oldest first."""
        return await self._run(messages.messages_after, room_id, after_seq, limit)

    async def room_last_seqs(self, room_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Each existing room's newest seq, in one query."""
        return await self._run(messages.room_last_seqs, room_ids)

    async def send_messages(self, items: Sequence[NewMessage]) -> list[Sent | Refusal]:
        """Store all of ``items`` in one transaction, results in ``items``' order; a repeated
        (room, sender, temp_id) gets the original as a duplicate (see :mod:`.send`)."""
        return await self._run(send.send_messages, items)

    async def ack(self, room_id: uuid.UUID, user_id: uuid.UUID, last_read: int) -> int | Refusal:
        return await self._run(messages.ack, room_id, user_id, last_read)

    # -- worker ----------------------------------------------------------------------------

    async def claim_outbox(self, worker: str, limit: int, lease_ms: int) -> list[OutboxRow]:
        return await self._run(outbox.claim_outbox, worker, limit, lease_ms)

    async def mark_published(self, ids: Sequence[int], worker: str) -> int:
        return await self._run(outbox.mark_published, ids, worker)

    async def mark_failed(
        self, delays_ms: Sequence[tuple[int, int]], worker: str, error: str, max_attempts: int
    ) -> int:
        return await self._run(outbox.mark_failed, delays_ms, worker, error, max_attempts)

    async def release(self, ids: Sequence[int], worker: str) -> int:
        return await self._run(outbox.release, ids, worker)

    # -- rooms and health ------------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        members: Sequence[tuple[uuid.UUID, str]],
        description: str | None = None,
    ) -> uuid.UUID:
        return await self._run(rooms.create_room, name, members, description)

    async def add_member(self, room_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
        await self._run(rooms.add_member, room_id, user_id, role)

    # -- the HTTP API (raise NotFound, RoleRequired, Conflict, OutOfRange) -----------------

    async def api_create_room(
        self,
        owner: uuid.UUID,
        name: str,
        description: str | None,
        member_ids: Sequence[uuid.UUID],
    ) -> RoomView:
        return await self._run(directory.create_room, owner, name, description, member_ids)

    async def api_list_rooms(
        self, user: uuid.UUID, limit: int, after: Cursor | None
    ) -> tuple[list[RoomView], Cursor | None]:
        return await self._run(directory.list_rooms, user, limit, after)

    async def api_get_room(self, room_id: uuid.UUID, user: uuid.UUID) -> RoomView:
        return await self._run(directory.get_room, room_id, user)

    async def api_update_room(
        self, room_id: uuid.UUID, user: uuid.UUID, changes: dict[str, str | None]
    ) -> RoomView:
        return await self._run(directory.update_room, room_id, user, changes)

    async def api_close_room(self, room_id: uuid.UUID, user: uuid.UUID) -> None:
        await self._run(directory.close_room, room_id, user)

    async def api_list_members(
        self, room_id: uuid.UUID, user: uuid.UUID, limit: int, after: Cursor | None
    ) -> tuple[list[MemberView], Cursor | None]:
        return await self._run(directory.list_members, room_id, user, limit, after)

    async def api_put_member(
        self, room_id: uuid.UUID, actor: uuid.UUID, target: uuid.UUID, role: str | None
    ) -> tuple[MemberView, bool]:
        return await self._run(directory.put_member, room_id, actor, target, role)

    async def api_remove_member(
        self, room_id: uuid.UUID, actor: uuid.UUID, target: uuid.UUID
    ) -> None:
        await self._run(directory.remove_member, room_id, actor, target)

    async def api_page(
        self,
        room_id: uuid.UUID,
        user: uuid.UUID,
        *,
        before_seq: int | None,
        after_seq: int | None,
        limit: int,
    ) -> tuple[list[ChatMessage], bool]:
        return await self._run(
            history.page, room_id, user, before_seq=before_seq, after_seq=after_seq, limit=limit
        )

    async def api_get_message(
        self, room_id: uuid.UUID, user: uuid.UUID, message_id: int
    ) -> ChatMessage:
        return await self._run(history.get_message, room_id, user, message_id)

    async def api_mark_read(
        self, room_id: uuid.UUID, user: uuid.UUID, message_id: int
    ) -> tuple[int, int]:
        return await self._run(history.mark_read, room_id, user, message_id)

    async def api_search(
        self,
        user: uuid.UUID,
        query: str,
        *,
        room_id: uuid.UUID | None,
        offset: int,
        limit: int,
    ) -> tuple[list[SearchHit], bool]:
        return await self._run(
            history.search, user, query, room_id=room_id, offset=offset, limit=limit
        )

    async def ping(self) -> None:
        await self._run(rooms.ping)

    def pool_stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())
