"""Connection and process lifecycle: graceful drain on shutdown, keepalive, connection limit,
worker hand-back on shutdown, structured logs without secrets."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import attrs
import trio
import trio_websocket

from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.bus import Bus
from arcyou_trio.client import ChatClient, open_websocket
from arcyou_trio.config import Settings
from arcyou_trio.gateway import serve_gateway
from arcyou_trio.store import Store
from arcyou_trio.worker import OutboxWorker
from tests.conftest import db, make_room, running_system
from tests.helpers import free_port, http_get, send_one, wait_for, wait_healthy
from tests.test_entrypoints import base_env, run_cli, service


@asynccontextmanager
async def stoppable_gateway(
    settings: Settings,
) -> AsyncIterator[tuple[str, trio.Event, trio.Event]]:
    """A gateway whose graceful stop the test triggers: (url, stopping, stopped)."""
    stopping, stopped = trio.Event(), trio.Event()
    async with (
        Store.open(settings, wait=True) as store,
        Bus.open(settings.redis_url) as bus,
        trio.open_nursery() as nursery,
    ):

        async def run(task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
            try:
                await serve_gateway(
                    settings,
                    store,
                    bus,
                    verifier_from_settings(settings),
                    stopping=stopping,
                    task_status=task_status,
                )
            finally:
                stopped.set()

        listeners = await nursery.start(run)
        port = listeners[0].socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}", stopping, stopped
        nursery.cancel_scope.cancel()


async def test_shutdown_finishes_the_send_in_flight_then_closes_1001(settings: Settings) -> None:
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)
    async with stoppable_gateway(settings) as (url, stopping, stopped):
        async with ChatClient.connect(url) as client:
            await client.auth(alice)
            await client.join(room)
            # Hold the room's row lock so the send is stuck inside its transaction.
            with db(settings.database_url) as blocker:
                blocker.execute("BEGIN")
                blocker.execute("SELECT 1 FROM arcyou_chat_rooms WHERE id = %s FOR UPDATE", (room,))
                async with trio.open_nursery() as nursery:
                    replies: list[dict[str, object]] = []

                    async def send() -> None:
                        replies.append(await client.send(room, "in flight", temp_id="f1"))

                    nursery.start_soon(send)

                    async def send_waiting() -> bool:
                        def waiting() -> bool:
                            with db(settings.database_url) as conn:
                                row = conn.execute(
                                    "SELECT count(*) FROM pg_stat_activity"
                                    " WHERE wait_event_type = 'Lock'"
                                ).fetchone()
                                return bool(row and row[0] > 0)

                        return await trio.to_thread.run_sync(waiting)

                    await wait_for(send_waiting, what="the send to wait on the room lock")
                    stopping.set()
                    await trio.sleep(0.2)  # shutdown has begun; the send is still blocked
                    assert not stopped.is_set()
                    blocker.execute("COMMIT")
            with trio.fail_after(10):
                reason = await client.wait_closed()
            assert replies and replies[0]["success"] is True and replies[0]["temp_id"] == "f1"
            assert reason.code == 1001
        with trio.fail_after(10):
            await stopped.wait()
    with db(settings.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM arcyou_chat_messages").fetchone()
    assert row == (1,)


async def test_shutdown_closes_idle_connections_and_stops_accepting(settings: Settings) -> None:
    async with stoppable_gateway(settings) as (url, stopping, stopped):
        async with ChatClient.connect(url) as idle, ChatClient.connect(url) as unauthenticated:
            await idle.auth(uuid.uuid4())
            stopping.set()
            with trio.fail_after(10):
                assert (await idle.wait_closed()).code == 1001
                assert (await unauthenticated.wait_closed()).code == 1001
                await stopped.wait()
        port = int(url.rsplit(":", 1)[1])
        try:
            await http_get(port, "/health")
        except OSError:
            pass  # refused: nothing listens any more
        else:
            raise AssertionError("the gateway still accepts connections after shutdown")


async def test_unanswered_pings_close_the_connection(settings: Settings) -> None:
    quick = attrs.evolve(settings, ws_ping_interval_ms=100, ws_ping_timeout_ms=300)
    alice = uuid.uuid4()
    # trio-websocket answers pings from its reader; a client that never takes its messages
    # (queue of 1, two replies pending) stops reading the socket, so pongs never come.
    async with running_system(quick) as system, open_websocket(system.url) as ws:
        if True:
            await ws.send_message(json.dumps({"op": "auth", "token": str(alice)}))
            await ws.send_message(json.dumps({"op": "join", "room_id": str(uuid.uuid4())}))
            await ws.send_message(json.dumps({"op": "join", "room_id": str(uuid.uuid4())}))
            with trio.fail_after(10):
                while True:
                    try:
                        await ws.get_message()
                    except trio_websocket.ConnectionClosed as exc:
                        assert exc.reason.code in (1001, 1006)
                        break
                    # Taking messages again only after the server has given up on us.
                    await trio.sleep(1.0)


def rejection(exc: BaseException) -> trio_websocket.ConnectionRejected | None:
    """The handshake rejection inside ``exc`` (errors from task groups arrive wrapped)."""
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            if (found := rejection(sub)) is not None:
                return found
    return None


async def try_connect(url: str) -> trio_websocket.ConnectionRejected | None:
    try:
        async with ChatClient.connect(url) as client:
            assert (await client.auth(uuid.uuid4()))["success"] is True
    except BaseException as exc:
        if (found := rejection(exc)) is None:
            raise
        return found
    return None


async def test_connection_limit_refuses_politely(settings: Settings) -> None:
    limited = attrs.evolve(settings, max_connections=2)
    async with running_system(limited) as system:
        async with ChatClient.connect(system.url), ChatClient.connect(system.url):
            refused = await try_connect(system.url)
            assert refused is not None and refused.status_code == 503
            assert b"retry later" in (refused.body or b"")

        # Both left: there is room again.
        async def admitted() -> bool:
            return await try_connect(system.url) is None

        await wait_for(admitted, what="a free connection slot")


async def test_worker_hands_back_claimed_rows_when_stopped(settings: Settings) -> None:
    alice = uuid.uuid4()
    room = make_room(settings.database_url, alice)

    # A "Redis" that accepts connections and never answers: publishing hangs.
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        hung = attrs.evolve(settings, redis_url=f"redis://127.0.0.1:{port}/0")
        async with Store.open(hung, wait=True) as store:
            await send_one(
                store, room_id=room, user_id=alice, type="text", content={"text": "stuck"}
            )
            async with Bus.open(hung.redis_url, timeout_s=60) as bus, trio.open_nursery() as run:
                worker = OutboxWorker(hung, store, bus)
                await run.start(worker.serve)

                async def claimed() -> bool:
                    def status() -> str:
                        with db(settings.database_url) as conn:
                            row = conn.execute("SELECT status::text FROM outbox").fetchone()
                            return str(row[0]) if row else ""

                    return await trio.to_thread.run_sync(status) == "in_progress"

                await wait_for(claimed, what="the worker to claim the row")
                run.cancel_scope.cancel()  # what SIGTERM does to a worker
        nursery.cancel_scope.cancel()
    with db(settings.database_url) as conn:
        row = conn.execute("SELECT status::text, locked_by, attempts FROM outbox").fetchone()
    assert row == ("pending", None, 0)


async def test_json_logs_and_no_token_in_them(database_url: str, redis_url: str) -> None:
    port = free_port()
    env = base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PORT=str(port),
        JWT_PUBLIC_KEY="dev-placeholder",
        LOG_FORMAT="json",
    )
    secret = "SECRET-TOKEN-VALUE-1234"
    with service("arcyou_trio.gateway", env) as gateway:
        await wait_healthy(port)
        async with ChatClient.connect(f"ws://127.0.0.1:{port}") as client:
            assert (await client.auth(secret))["success"] is False
        gateway.send_signal(2)
        out, _ = gateway.communicate(timeout=20)
    assert gateway.returncode == 0, out
    lines = [line for line in out.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert any("auth failed" in r["msg"] for r in records)
    assert secret not in out


def test_sigterm_stops_a_gateway_process_gracefully(database_url: str, redis_url: str) -> None:
    port = free_port()
    env = base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PORT=str(port),
        JWT_PUBLIC_KEY="dev-placeholder",
        SHUTDOWN_GRACE_MS="5000",
    )
    assert run_cli("arcyou_trio.migrate", env=env).returncode == 0

    async def scenario() -> tuple[int, str]:
        with service("arcyou_trio.gateway", env) as gateway:
            await wait_healthy(port)
            async with ChatClient.connect(f"ws://127.0.0.1:{port}") as client:
                await client.auth(uuid.uuid4())
                gateway.terminate()
                with trio.fail_after(10):
                    assert (await client.wait_closed()).code == 1001
            out, _ = gateway.communicate(timeout=20)
            return gateway.returncode, out

    code, out = trio.run(scenario)
    assert code == 0, out
    assert "draining 1 connections" in out and "Traceback" not in out
