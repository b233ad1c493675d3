"""The worker's side of the outbox table: lease due rows, mark them published, failed or back.

Blocking functions over one psycopg connection, each one statement in autocommit, run on a pool
thread by :mod:`arcyou_trio.store.db`. Rows are written by the send
(:mod:`arcyou_trio.store.send`), which also NOTIFYs :data:`OUTBOX_CHANNEL`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from arcyou_trio.store.rows import OutboxRow

# The NOTIFY channel the send transaction signals and the workers LISTEN on.
OUTBOX_CHANNEL = "arcyou_outbox"

_CLAIM = """
WITH due AS (
    SELECT id FROM outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), stale AS (
    SELECT id FROM outbox
    WHERE status = 'in_progress' AND locked_until < now()
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET status = 'in_progress', locked_by = %(worker)s,
    locked_until = now() + %(lease_ms)s * interval '1 millisecond'
WHERE o.id IN (SELECT id FROM due UNION ALL SELECT id FROM stale)
RETURNING o.id, o.room_id, o.type, o.payload, o.attempts
"""


def claim_outbox(
    conn: psycopg.Connection[Any], worker: str, limit: int, lease_ms: int
) -> list[OutboxRow]:
    """Lease up to ``limit`` due rows (and rows whose lease expired) to ``worker``, by id."""
    with conn.cursor() as cur:
        cur.execute(_CLAIM, {"limit": limit, "worker": worker, "lease_ms": lease_ms})
        rows = [OutboxRow(*row) for row in cur.fetchall()]
    rows.sort(key=lambda r: r.id)
    return rows


def mark_published(conn: psycopg.Connection[Any], ids: Sequence[int], worker: str) -> int:
    """Mark ``worker``'s leased rows ``ids`` published; returns how many were."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE outbox
            SET status = 'published', published_at = now(), locked_by = NULL,
                locked_until = NULL, error = NULL
            WHERE id = ANY(%s) AND locked_by = %s AND status = 'in_progress'
            """,
            (list(ids), worker),
        )
        return cur.rowcount


def mark_failed(
    conn: psycopg.Connection[Any],
    delays_ms: Sequence[tuple[int, int]],
    worker: str,
    error: str,
    max_attempts: int,
) -> int:
    """Count a failed attempt for each (id, delay) and schedule a retry, or mark the row dead.

    Returns how many rows became dead.
    """
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE outbox o
            SET attempts = o.attempts + 1,
                status = CASE WHEN o.attempts + 1 >= %(max)s THEN 'dead'::outbox_status
                              ELSE 'pending'::outbox_status END,
                next_attempt_at = now() + f.delay_ms * interval '1 millisecond',
                error = %(error)s, locked_by = NULL, locked_until = NULL
            FROM unnest(%(ids)s::bigint[], %(delays)s::integer[]) AS f(id, delay_ms)
            WHERE o.id = f.id AND o.locked_by = %(worker)s AND o.status = 'in_progress'
            RETURNING o.status::text
            """,
            {
                "ids": [i for i, _ in delays_ms],
                "delays": [d for _, d in delays_ms],
                "max": max_attempts,
                "error": error[:2000],
                "worker": worker,
            },
        )
        return sum(1 for (status,) in cur.fetchall() if status == "dead")


def release(conn: psycopg.Connection[Any], ids: Sequence[int], worker: str) -> int:
    """Hand leased rows back (worker shutdown): pending again, due now, attempts unchanged."""
    with conn.cursor() as cur:
        cur.execute(
            """
            UPDATE outbox SET status = 'pending', locked_by = NULL, locked_until = NULL,
                              next_attempt_at = now()
            WHERE id = ANY(%s) AND locked_by = %s AND status = 'in_progress'
            """,
            (list(ids), worker),
        )
        return cur.rowcount
