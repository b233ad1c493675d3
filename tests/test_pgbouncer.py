"""PgBouncer compatibility, proven against a real ``pgbouncer`` in transaction pooling mode.

Each test starts its own PgBouncer on a free port in front of the test's fresh database, with a
server pool (``default_pool_size = 2``) smaller than the store's client pool, so that client
connections really are multiplexed onto fewer server connections. That is what breaks named
prepared statements on PgBouncer < 1.21: a statement prepared on one server connection is
missing on (or collides with a same-named one on) the server connection the next transaction
gets. With ``DB_PREPARE_THRESHOLD=none`` the whole system, and migrate, work through it.

PgBouncer refuses to run as root, so as root it is started with ``-u nobody``. It opens its
``logfile`` only after dropping privileges, and ``nobody`` cannot enter pytest's private
(0700) temporary directories, so instead of ``logfile`` its stderr log is written to
``pgbouncer.log`` in the test's ``tmp_path`` by this process. The ini and auth file are read
before the switch, so they may stay private.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import attrs
import psycopg
import pytest
import trio
from psycopg import sql

from arcyou_trio.client import ChatClient
from arcyou_trio.config import Settings
from arcyou_trio.errors import StoreError
from arcyou_trio.store import Store, apply_migrations
from arcyou_trio.store.migrate import available
from tests.conftest import db, make_room, running_system
from tests.helpers import free_port, send_one, wait_for

PGBOUNCER = shutil.which("pgbouncer")
if PGBOUNCER is None:
    pytest.skip(
        "pgbouncer binary not found; CI installs Debian's pgbouncer", allow_module_level=True
    )

SERVER_POOL_SIZE = 2


@attrs.frozen
class PgBouncer:
    """A running pgbouncer: where it listens and how to reach each database through it."""

    port: int
    user: str
    log: Path

    def url(self, dbname: str) -> str:
        return f"postgresql://{quote(self.user, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run a command on the admin console (simple query protocol, autocommit)."""
        with psycopg.connect(self.url("pgbouncer"), autocommit=True, connect_timeout=2) as conn:
            cur = conn.execute(command)
            names = [column.name for column in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _ini(server_url: str, dbnames: Sequence[str], port: int, auth_file: Path) -> str:
    server = urlsplit(server_url)
    user = unquote(server.username or "postgres")
    target = f"host={server.hostname or '127.0.0.1'} port={server.port or 5432} user={user}"
    if server.password:
        target += f" password={unquote(server.password)}"
    databases = "\n".join(f"{name} = {target} dbname={name}" for name in dbnames)
    return f"""\
[databases]
{databases}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
admin_users = {user}
pool_mode = transaction
max_client_conn = 100
default_pool_size = {SERVER_POOL_SIZE}
min_pool_size = 0
reserve_pool_size = 0
ignore_startup_parameters = extra_float_digits,options
"""


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@asynccontextmanager
async def run_pgbouncer(
    tmp_path: Path, server_url: str, dbnames: Sequence[str]
) -> AsyncIterator[PgBouncer]:
    """Start pgbouncer in front of ``dbnames`` on ``server_url``'s server; stop it at exit."""
    assert PGBOUNCER is not None
    user = unquote(urlsplit(server_url).username or "postgres")
    port = free_port()
    auth_file = tmp_path / "pgbouncer-users.txt"
    auth_file.write_text(f'"{user}" ""\n')
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(_ini(server_url, dbnames, port, auth_file))
    bouncer = PgBouncer(port=port, user=user, log=tmp_path / "pgbouncer.log")
    command = [PGBOUNCER, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(ini)]
    with bouncer.log.open("wb") as log:
        proc = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:

        async def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"pgbouncer exited with {proc.returncode}:\n{_log_tail(bouncer.log)}"
                )
            try:
                await trio.to_thread.run_sync(bouncer.admin, "SHOW VERSION")
            except psycopg.OperationalError:
                return False
            return True

        await wait_for(ready, what=f"pgbouncer on port {port}")
        yield bouncer
    finally:
        with trio.CancelScope(shield=True):
            proc.terminate()  # SIGTERM: pgbouncer's immediate shutdown
            with trio.move_on_after(10) as waited:
                await proc.wait()
            if waited.cancelled_caught:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def bouncer(tmp_path: Path, database_url: str) -> AsyncIterator[PgBouncer]:
    """PgBouncer (transaction pooling, 2 server connections) in front of the test database."""
    async with run_pgbouncer(tmp_path, database_url, [_dbname(database_url)]) as running:
        yield running


@pytest.fixture
def empty_database(pg_admin_url: str) -> Iterator[str]:
    """A database with no schema at all, dropped afterwards; yields its URL."""
    name = f"arcyou_pgb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield urlunsplit(urlsplit(pg_admin_url)._replace(path=f"/{name}"))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _dbname(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def _through(settings: Settings, bouncer: PgBouncer, threshold: int | None) -> Settings:
    return attrs.evolve(
        settings,
        database_url=bouncer.url(_dbname(settings.database_url)),
        db_prepare_threshold=threshold,
        rl_bucket_capacity=10_000,  # many sends from one user: rate limiting is not under test
    )


def _pool_stats(bouncer: PgBouncer, dbname: str) -> dict[str, Any]:
    (row,) = [r for r in bouncer.admin("SHOW STATS") if r["database"] == dbname]
    return row


def outbox_statuses(url: str) -> list[str]:
    with db(url) as conn:
        return [row[0] for row in conn.execute("SELECT status::text FROM outbox ORDER BY id")]


SENDS = 30


async def test_system_works_through_pgbouncer_without_prepared_statements(
    settings: Settings, bouncer: PgBouncer
) -> None:
    direct_url = settings.database_url
    dbname = _dbname(direct_url)
    via = _through(settings, bouncer, None)
    assert via.db_pool_size > SERVER_POOL_SIZE  # clients really share server connections
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room = make_room(direct_url, alice, bob)
    with trio.fail_after(60):
        # The test database is migrated already: migrate through PgBouncer is a clean no-op.
        assert await trio.to_thread.run_sync(apply_migrations, via.database_url) == []
        async with (
            running_system(via) as system,
            ChatClient.connect(system.url) as a,
            ChatClient.connect(system.url) as b,
        ):
            assert (await a.auth(alice))["success"] is True
            assert (await b.auth(bob))["success"] is True
            assert (await a.join(room))["success"] is True
            assert (await b.join(room))["success"] is True
            ids = []
            for i in range(SENDS):
                sender = a if i % 2 == 0 else b
                reply = await sender.send(room, f"m{i}", temp_id=f"t{i}")
                assert reply["success"] is True, reply
                ids.append(reply["message_id"])
                acked = await sender.ack(room, reply["message_id"])
                assert acked["success"] is True, acked
            assert ids == sorted(ids)
            for client in (a, b):
                events = [await client.next_event() for _ in range(SENDS)]
                assert [e["message"]["id"] for e in events] == ids
                assert {e["source"] for e in events} == {"live"}
            carol = uuid.uuid4()
            await trio.to_thread.run_sync(_add_member, direct_url, room, carol)
            async with ChatClient.connect(system.url) as fresh:
                await fresh.auth(carol)
                assert (await fresh.join(room))["success"] is True
                backfill = [await fresh.next_event() for _ in range(SENDS)]
                assert [e["message"]["id"] for e in backfill] == ids
                assert {e["source"] for e in backfill} == {"backfill"}

            async def all_published() -> bool:
                statuses = await trio.to_thread.run_sync(outbox_statuses, direct_url)
                return len(statuses) == SENDS and set(statuses) == {"published"}

            await wait_for(all_published, within_s=15, what="every outbox row published")
        stats = await trio.to_thread.run_sync(_pool_stats, bouncer, dbname)
    # The traffic really went through PgBouncer, well past psycopg's default threshold of 5
    # executions per statement (at least every send and every ack was a transaction of its own).
    assert stats["total_xact_count"] >= 2 * SENDS


def _add_member(url: str, room: uuid.UUID, user: uuid.UUID) -> None:
    with db(url) as conn:
        conn.execute(
            "INSERT INTO arcyou_chat_members (room_id, user_id) VALUES (%s, %s)", (room, user)
        )


async def test_migrate_from_scratch_through_pgbouncer(tmp_path: Path, empty_database: str) -> None:
    with trio.fail_after(60):
        async with run_pgbouncer(tmp_path, empty_database, [_dbname(empty_database)]) as pgb:
            url = pgb.url(_dbname(empty_database))
            applied = await trio.to_thread.run_sync(apply_migrations, url)
            assert applied == available() and applied
            assert await trio.to_thread.run_sync(apply_migrations, url) == []
    with db(empty_database) as conn:
        rows = conn.execute("SELECT version FROM arcyou_schema_migrations ORDER BY 1").fetchall()
    assert [version for (version,) in rows] == [m.version for m in available()]


async def test_default_prepare_threshold_breaks_behind_transaction_pooling(
    settings: Settings, bouncer: PgBouncer
) -> None:
    """Why DB_PREPARE_THRESHOLD exists: psycopg's default (5) fails through PgBouncer 1.18."""
    via = _through(settings, bouncer, 5)
    user = uuid.uuid4()
    room = make_room(settings.database_url, user)
    sent = 0
    with trio.fail_after(30):
        async with Store.open(via, wait=True) as store:
            with pytest.raises(StoreError) as info:
                for sent in range(1, 101):
                    await send_one(
                        store, room_id=room, user_id=user, type="text", content={"text": f"m{sent}"}
                    )
    cause = info.value.__cause__
    assert isinstance(
        cause,
        psycopg.errors.DuplicatePreparedStatement | psycopg.errors.InvalidSqlStatementName,
    ), repr(cause)
    # It works for the first executions and breaks once psycopg starts preparing.
    assert sent > 5, f"failed on send {sent}: {cause!r}"
