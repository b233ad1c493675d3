"""The gateway: HTTP front + WebSocket connections + room fan-out under one nursery.

``serve_gateway`` follows trio's ``serve_*`` convention: it reports ``started(listeners)`` once
the port is bound and Redis (global mode) is subscribed, and runs until cancelled. One bad
connection can never take the server down: the per-connection handler logs and contains any
exception that is not a cancellation.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import trio
import trio_websocket

from arcyou_trio.auth import Verifier, refresh_keys
from arcyou_trio.bus import Bus, Channels
from arcyou_trio.config import Settings
from arcyou_trio.errors import PortInUse
from arcyou_trio.gateway.connection import (
    CLOSE_INTERNAL,
    Connection,
    GatewayContext,
)
from arcyou_trio.gateway.http_front import make_handler
from arcyou_trio.gateway.rooms import RoomHub
from arcyou_trio.gateway.sendbatch import SendCoalescer
from arcyou_trio.store import Store

log = logging.getLogger(__name__)

HEALTH_OK = (200, b'{"ok":true}')


def _contained(
    handler: Callable[[trio.SocketStream], Awaitable[None]], ctx: GatewayContext
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    async def run(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except Exception:  # a bug serving one client must not stop the others
            ctx.stats.errors += 1
            log.exception("connection handler failed")

    return run


async def serve_gateway(
    settings: Settings,
    store: Store,
    bus: Bus,
    verifier: Verifier,
    *,
    stopping: trio.Event | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, or until ``stopping`` is set: then stop accepting, drain every
    connection (in-flight requests finish and are answered, then close 1001) and return."""
    async with bus.subscriber() as subscriber:
        channels = Channels(settings.pubsub_mode, settings.redis_channel_prefix)
        hub = RoomHub(
            channels,
            subscriber,
            store,
            page_size=settings.backfill_limit,
            resync_interval_s=settings.resync_interval_ms / 1000,
        )
        sender = SendCoalescer(
            store,
            max_batch=settings.send_batch_max,
            flushers=max(1, settings.db_pool_size // 2),
        )
        ctx = GatewayContext(
            settings=settings, store=store, hub=hub, verifier=verifier, sender=sender
        )
        drained = trio.Event()

        async def on_websocket(ws: trio_websocket.WebSocketConnection, peer: str) -> None:
            conn = Connection(ws, peer, ctx)
            ctx.connections.add(conn)
            ctx.stats.connections += 1
            ctx.stats.accepted += 1
            if ctx.draining:
                conn.drain()
            try:
                await conn.run()
            except Exception:
                ctx.stats.errors += 1
                log.exception("connection %s failed", peer)
                with trio.move_on_after(1):
                    await ws.aclose(CLOSE_INTERNAL, "internal error")
            finally:
                ctx.stats.connections -= 1
                ctx.connections.discard(conn)
                if ctx.draining and not ctx.connections:
                    drained.set()

        def admit() -> bool:
            if ctx.draining or ctx.stats.connections >= settings.max_connections:
                ctx.stats.refused_connections += 1
                return False
            return True

        handler = make_handler(
            on_websocket=on_websocket,
            health=lambda: HEALTH_OK,
            max_message_bytes=settings.max_body_bytes,
            admit=admit,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run_listener)
            await nursery.start(sender.run)
            nursery.start_soon(_keepalive, ctx)
            async with trio.open_nursery() as accepting:
                listeners: list[trio.SocketListener] = await accepting.start(
                    partial(
                        serve_tcp,
                        _contained(handler, ctx),
                        settings.port,
                        host=settings.host,
                        handler_nursery=nursery,
                    )
                )
                for listener in listeners:
                    host, port, *_ = listener.socket.getsockname()
                    log.info(
                        "gateway listening on %s:%d (pubsub %s)",
                        host,
                        port,
                        settings.pubsub_mode.value,
                    )
                task_status.started(listeners)
                if stopping is None:
                    await trio.sleep_forever()
                else:
                    await stopping.wait()
                # Stop accepting: the listening sockets close with this nursery.
                accepting.cancel_scope.cancel()
            ctx.draining = True
            log.info("draining %d connections", len(ctx.connections))
            for conn in list(ctx.connections):
                conn.drain()
            if ctx.connections:
                await drained.wait()
            log.info("all connections closed")
            nursery.cancel_scope.cancel()


#: Connections the keepalive sweep pings before it lets other tasks run.
PINGS_PER_TURN = 500


async def _keepalive(ctx: GatewayContext) -> None:
    """Every WS_PING_INTERVAL_MS, ping every connection (one sweep for all of them)."""
    interval_s = ctx.settings.ws_ping_interval_ms / 1000
    while True:
        await trio.sleep(interval_s)
        for i, conn in enumerate(list(ctx.connections)):
            conn.start_ping()
            if i % PINGS_PER_TURN == PINGS_PER_TURN - 1:
                await trio.lowlevel.checkpoint()


async def serve_tcp(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    port: int,
    *,
    host: str | None,
    handler_nursery: trio.Nursery,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``trio.serve_tcp``, with a port already taken reported as :class:`PortInUse`."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host or "*", port) from exc
        raise
    await trio.serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, task_status=task_status
    )


async def run_gateway(
    settings: Settings, verifier: Verifier, stopping: trio.Event | None = None
) -> None:
    """The whole gateway process: open the adapters, serve until stopped or cancelled."""
    if verifier.dev_mode:
        log.warning("JWT_PUBLIC_KEY=dev-placeholder: any UUID is accepted as a token (dev only)")
    async with (
        Store.open(settings) as store,
        Bus.open(settings.redis_url) as bus,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(refresh_keys, verifier, settings)
        await serve_gateway(settings, store, bus, verifier, stopping=stopping)
        nursery.cancel_scope.cancel()
