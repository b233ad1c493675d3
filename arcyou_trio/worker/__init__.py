"""The outbox worker (trio): moves committed messages from PostgreSQL to Redis Pub/Sub."""

from arcyou_trio.worker.loop import OutboxWorker, run_worker

__all__ = ["OutboxWorker", "run_worker"]
