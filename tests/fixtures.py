"""Shared fixtures: real PostgreSQL and Redis, a fresh database per test, a running system.

A pytest plugin for the whole run (``-p tests.fixtures`` in pyproject.toml), so that the
product's tests (tests/) and the harness's (harness/tests/) use the same fixtures and servers,
and the same hypothesis profile.

The servers come from ``ARCYOU_TEST_DATABASE_URL`` / ``ARCYOU_TEST_REDIS_URL`` and default to
the PostgreSQL and Redis on this machine. Migrations run once per session into a template
database; every test gets its own copy (``CREATE DATABASE ... TEMPLATE``), dropped afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import hypothesis
import psycopg
import pytest
import trio
from psycopg import sql

from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.bus import Bus
from arcyou_trio.config import PubSubMode, Settings
from arcyou_trio.devstack import LocalPostgres, LocalRedis
from arcyou_trio.gateway import serve_gateway
from arcyou_trio.store import Store, apply_migrations
from arcyou_trio.store.rooms import create_room
from arcyou_trio.worker import OutboxWorker

# CI runs the property tests derandomized: a red CI run then always reproduces locally with
# HYPOTHESIS_PROFILE=ci, and new random exploration happens on developers' machines.
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
hypothesis.settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


def _with_db(url: str, dbname: str) -> str:
    """The same server URL with another database name."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The PostgreSQL the tests use: ARCYOU_TEST_DATABASE_URL, else a throwaway local server
    started once per session with the same launcher as ``arcyou-trio dev``."""
    url = os.environ.get("ARCYOU_TEST_DATABASE_URL")
    if url:
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            pytest.exit(f"ARCYOU_TEST_DATABASE_URL is unreachable ({url}): {exc}", returncode=3)
        yield url
        return
    server = LocalPostgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server.admin_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis the tests use: ARCYOU_TEST_REDIS_URL, else a throwaway local redis-server."""
    url = os.environ.get("ARCYOU_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    name = f"arcyou_tpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    apply_migrations(_with_db(pg_admin_url, name))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        # Nobody (autovacuum included) may sit in the template while tests clone it.
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    name = f"arcyou_t_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template_db)
    )
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for attempt in range(50):
            try:
                conn.execute(create)
                break
            except psycopg.errors.ObjectInUse:
                # A session was still leaving the template; it goes within milliseconds.
                if attempt == 49:
                    raise
                time.sleep(0.1)
    yield _with_db(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(params=[PubSubMode.GLOBAL], ids=lambda m: m.value)
def pubsub_mode(request: pytest.FixtureRequest) -> PubSubMode:
    mode: PubSubMode = request.param
    return mode


@pytest.fixture
def settings(database_url: str, redis_url: str, pubsub_mode: PubSubMode) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "HOST": "127.0.0.1",
            "PORT": "0",
            "JWT_PUBLIC_KEY": "dev-placeholder",
            "PUBSUB_MODE": pubsub_mode.value,
            "OUTBOX_POLL_MS": "50",
            "BACKOFF_BASE_MS": "50",
            "BACKOFF_CAP_MS": "200",
            "MAX_ATTEMPTS": "3",
            "DB_POOL_SIZE": "4",
            "WORKER_ID": f"test-worker-{uuid.uuid4().hex[:6]}",
            # Test runs (and tests) sharing one Redis must not hear each other's events.
            "REDIS_CHANNEL_PREFIX": f"test-{uuid.uuid4().hex[:8]}:",
        }
    )


def db(url: str) -> psycopg.Connection[Any]:
    """A plain autocommit connection for arranging and inspecting test data."""
    return psycopg.connect(url, autocommit=True)


def make_room(url: str, *members: uuid.UUID, name: str = "room") -> uuid.UUID:
    """A room with ``members`` as participants (the product's :func:`create_room`)."""
    with db(url) as conn:
        return create_room(conn, name, [(user, "participant") for user in members])


@attrs.define
class System:
    """A gateway and its worker(s), running in the test's trio run."""

    settings: Settings
    store: Store
    bus: Bus
    url: str
    port: int
    workers: list[OutboxWorker]
    nursery: trio.Nursery


async def start_gateway(
    nursery: trio.Nursery, settings: Settings, store: Store, bus: Bus
) -> tuple[str, int]:
    listeners = await nursery.start(
        serve_gateway, settings, store, bus, verifier_from_settings(settings)
    )
    port = listeners[0].socket.getsockname()[1]
    return f"ws://127.0.0.1:{port}", port


async def start_worker(
    nursery: trio.Nursery, settings: Settings, store: Store, bus: Bus
) -> OutboxWorker:
    worker = OutboxWorker(settings, store, bus)
    await nursery.start(worker.serve)
    return worker


@asynccontextmanager
async def running_system(
    settings: Settings, *, workers: int = 1, gateway: bool = True
) -> AsyncIterator[System]:
    """Open store and bus, start a gateway and ``workers`` workers; stop all at exit."""
    async with (
        Store.open(settings, wait=True) as store,
        Bus.open(settings.redis_url) as bus,
        trio.open_nursery() as nursery,
    ):
        url, port = ("", 0)
        if gateway:
            url, port = await start_gateway(nursery, settings, store, bus)
        started = []
        for i in range(workers):
            worker_settings = attrs.evolve(settings, worker_id=f"{settings.worker_id}-{i}")
            started.append(await start_worker(nursery, worker_settings, store, bus))
        yield System(settings, store, bus, url, port, started, nursery)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    async with running_system(settings) as running:
        yield running


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    async with Store.open(settings, wait=True) as opened:
        yield opened
