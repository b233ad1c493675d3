"""Versioned SQL migrations, applied idempotently and safely when several processes race.

Migrations are the files ``migrations/NNNN_name.sql`` shipped in this package. All pending ones
are applied in one transaction that first takes a transaction-scoped advisory lock, so two
``migrate`` processes serialise (the second finds nothing to do) and the lock also works through
PgBouncer in transaction pooling mode. An applied migration whose file has since changed is an
error: history is not rewritten silently.
"""

from __future__ import annotations

import hashlib
import logging
import re
from importlib import resources

import attrs
import psycopg

from arcyou_trio.errors import MigrationError, StoreUnavailable

log = logging.getLogger(__name__)

# An arbitrary constant shared by every migrate process ("arcyou" in ASCII).
MIGRATION_LOCK_KEY = 0x617263796F75
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("arcyou_trio.store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


def apply(conninfo: str) -> list[Migration]:
    """Apply every pending migration; return the ones applied by this call."""
    try:
        with psycopg.connect(conninfo, autocommit=False, connect_timeout=10) as conn:
            return _apply(conn)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot reach PostgreSQL: {_one_line(exc)}") from exc
    except psycopg.Error as exc:
        raise MigrationError(f"migration failed: {_one_line(exc)}") from exc


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    log.warning("%s: %s", diag.severity, diag.message_primary)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _apply(conn: psycopg.Connection) -> list[Migration]:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS arcyou_schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = conn.execute("SELECT version, checksum FROM arcyou_schema_migrations").fetchall()
        applied = {version: checksum for version, checksum in rows}
        done = []
        for migration in available():
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after "
                        "it was applied; add a new migration instead"
                    )
                continue
            log.info("applying migration %04d_%s", migration.version, migration.name)
            # A migration's notices (e.g. data it had to repair) reach the log.
            conn.add_notice_handler(_log_notice)
            try:
                conn.execute(migration.sql.encode())
            finally:
                conn.remove_notice_handler(_log_notice)
            conn.execute(
                "INSERT INTO arcyou_schema_migrations (version, name, checksum)"
                " VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            done.append(migration)
        return done
