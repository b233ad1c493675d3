"""The system a chaos run owns, and the faults done to it.

A :class:`Stack` wraps the benchmark's :class:`~arcyou_harness.common.system.System` (service
environment, readiness checks, shutdown of everything) around servers of its own: a local
PostgreSQL and Redis from :mod:`arcyou_trio.devstack`, a database ``arcyou_chaos`` with the
migrations applied, the plan's rooms and members. Gateways and workers are processes in *slots*;
each gateway slot keeps its port, so a gateway killed with SIGKILL comes back where clients look
for it.

Threads: every process (servers, gateways, workers) is started from the main thread -- the
children get SIGTERM when the thread that started them exits (see
:mod:`arcyou_trio.devstack.servers`), and trio runs on the main thread, so the ``spawn_*`` and
``*_spawn`` calls are plain calls from async code. Only waiting (readiness, ``pg_ctl stop``,
reaping) goes to worker threads.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psycopg
import trio

from arcyou_harness.chaos.check import StoredRow
from arcyou_harness.chaos.model import Plan
from arcyou_harness.common.system import Service, System
from arcyou_trio.devstack import LocalPostgres, LocalRedis
from arcyou_trio.devstack.servers import free_port
from arcyou_trio.store import apply_migrations

#: Settings of the chaos gateways and workers, over the benchmark's raised rate limits: a tight
#: send buffer (so that a client that stops reading is soon a slow consumer), a short outbox lease
#: (a killed worker's rows come back after 5 s, not 30 s), a short shutdown grace.
CHAOS_ENV = {
    "WS_SEND_HIGH_WATER": "32768",
    "OUTBOX_POLL_MS": "200",
    "OUTBOX_LEASE_MS": "5000",
    "SHUTDOWN_GRACE_MS": "3000",
}
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class Stack:
    def __init__(self, run_dir: Path, *, gateways: int = 2, workers: int = 2) -> None:
        env = dict(CHAOS_ENV, REDIS_CHANNEL_PREFIX=f"arcyou-chaos-{os.getpid()}:")
        self.system = System(run_dir, env)
        self.run_dir = run_dir
        self.gateway_ports = [free_port() for _ in range(gateways)]
        self.gateways: dict[int, Service] = {}
        self.workers: dict[int, Service] = {}
        self.worker_slots = workers
        self._spawned = 0

    @property
    def pg(self) -> LocalPostgres:
        assert self.system.pg is not None
        return self.system.pg

    @property
    def redis(self) -> LocalRedis:
        assert self.system.rds is not None
        return self.system.rds

    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}/" for port in self.gateway_ports]

    # -- servers (blocking; main thread) ---------------------------------------------------

    def start_servers(self, plan: Plan) -> None:
        system = self.system
        system.pg = LocalPostgres(self.run_dir / "postgres")
        system.pg.start()
        system.admin_url = system.pg.admin_url
        system.database_url = system.pg.create_database("arcyou_chaos")
        system.rds = LocalRedis(self.run_dir / "redis")
        system.rds.start()
        system.redis_url = system.rds.url
        apply_migrations(system.database_url)
        self._seed(plan)

    def _seed(self, plan: Plan) -> None:
        members = [(room, m.user) for m in plan.members for room in m.rooms]
        members.append((plan.probe_room, plan.probe_user))
        with (
            psycopg.connect(self.system.database_url, autocommit=True) as conn,
            conn.transaction(),
        ):
            for i, room in enumerate((*plan.rooms, plan.probe_room)):
                conn.execute(
                    "INSERT INTO arcyou_chat_rooms (id, name) VALUES (%s, %s)",
                    (room, f"chaos room {i}"),
                )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO arcyou_chat_members (room_id, user_id) VALUES (%s, %s)",
                    members,
                )

    def stop(self) -> None:
        self.system.stop()

    # -- gateways and workers --------------------------------------------------------------

    def _spawn(self, kind: str, slot: int) -> Service:
        self._spawned += 1
        name = f"{kind}-{slot}-{self._spawned}"
        extra = {"WORKER_ID": f"chaos-{name}"}
        port = self.gateway_ports[slot] if kind == "gateway" else None
        if port is not None:
            extra = {"PORT": str(port)}
        service = self.system.spawn_service(kind, name, port, **extra)
        (self.gateways if kind == "gateway" else self.workers)[slot] = service
        return service

    def spawn_gateway(self, slot: int) -> Service:
        return self._spawn("gateway", slot)

    def spawn_worker(self, slot: int) -> Service:
        return self._spawn("worker", slot)

    async def wait_ready(self, service: Service) -> None:
        await trio.to_thread.run_sync(self.system.wait_ready, service)

    async def kill(self, service: Service) -> None:
        """SIGKILL and reap ``service`` (no shutdown of any kind)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(service.pid, signal.SIGKILL)
        await trio.to_thread.run_sync(lambda: service.proc.wait(timeout=STOP_TIMEOUT_S))
        if service in self.system.services:
            self.system.services.remove(service)

    async def restart_redis(self, down_s: float) -> float:
        """Stop Redis, keep it down ``down_s``, start it on the same port; the time it went
        down."""
        await trio.to_thread.run_sync(self.redis.stop)
        down_at = trio.current_time()
        await trio.sleep(down_s)  # the outage itself: deliberate
        self.redis.spawn()
        await trio.to_thread.run_sync(self.redis.wait_ready)
        return down_at

    async def restart_postgres(self, mode: str, down_s: float) -> float:
        """``pg_ctl stop -m <mode>``, down ``down_s``, start on the same port and data; the
        time it went down."""
        await trio.to_thread.run_sync(self.pg.shutdown, mode)
        down_at = trio.current_time()
        await trio.sleep(down_s)  # the outage itself: deliberate
        self.pg.spawn()
        await trio.to_thread.run_sync(self.pg.wait_ready)
        return down_at

    # -- the truth (blocking; run on a thread) ---------------------------------------------

    def stored_messages(self) -> list[StoredRow]:
        with psycopg.connect(self.system.database_url, autocommit=True, connect_timeout=10) as c:
            rows = c.execute(
                "SELECT id, room_id::text, temp_id FROM arcyou_chat_messages ORDER BY id"
            ).fetchall()
        return [StoredRow(int(r[0]), str(r[1]), r[2]) for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by status, plus ``retried`` (attempts > 0) and ``overtaken`` (published
        after a row with a higher id of the same room: live events then arrive out of order)."""
        with psycopg.connect(self.system.database_url, autocommit=True, connect_timeout=10) as c:
            rows = c.execute("SELECT status::text, count(*) FROM outbox GROUP BY 1").fetchall()
            extra = c.execute(
                """
                SELECT count(*) FILTER (WHERE attempts > 0),
                       count(*) FILTER (WHERE published_at > later_min)
                FROM (SELECT attempts, published_at,
                             min(published_at) OVER (PARTITION BY room_id ORDER BY id DESC
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS later_min
                      FROM outbox) o
                """
            ).fetchone()
        out = {str(status): int(n) for status, n in rows}
        if extra is not None:
            out["retried"], out["overtaken"] = int(extra[0]), int(extra[1])
        return out
