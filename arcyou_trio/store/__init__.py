"""The PostgreSQL adapter: pool, all SQL, schema migrations (psycopg lives only here)."""

from arcyou_trio.store.db import Store
from arcyou_trio.store.migrate import apply as apply_migrations
from arcyou_trio.store.queries import Backfill, OutboxRow, Page, Refusal, Sent
from arcyou_trio.store.send_batch import NewMessage

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
