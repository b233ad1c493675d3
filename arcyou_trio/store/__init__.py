"""The PostgreSQL adapter (psycopg lives only here).

``db`` is the trio face (the pool on threads, timeouts, error translation); the blocking SQL
is split by what it owns: ``send`` (storing messages), ``messages`` (reading them, read marks),
``outbox`` (the worker's leases), ``rooms`` (room and member setup); ``rows`` holds the result
types, ``migrate`` and ``migrations/*.sql`` the schema, ``notify`` the workers' LISTEN.
"""

from arcyou_trio.store.db import Store
from arcyou_trio.store.migrate import apply as apply_migrations
from arcyou_trio.store.rows import Backfill, OutboxRow, Page, Refusal, Sent
from arcyou_trio.store.send import NewMessage

__all__ = [
    "Backfill",
    "NewMessage",
    "OutboxRow",
    "Page",
    "Refusal",
    "Sent",
    "Store",
    "apply_migrations",
]
