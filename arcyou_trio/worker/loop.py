"""The outbox worker: claim due rows, publish them to Redis, mark them published.

Seed §6, plus what the seed leaves open: rows whose lease (``locked_until``) expired are claimed
again so a killed worker strands nothing; a failed publish schedules a retry with exponential
backoff and past ``MAX_ATTEMPTS`` the row is ``dead`` with the error recorded; transient
PostgreSQL or Redis errors are logged and retried on the next loop — the worker never exits on
them. On cancellation, rows this worker claimed but did not publish are handed back.

The worker wakes on the send transaction's NOTIFY (see :mod:`arcyou_trio.store.notify`) and
polls every ``OUTBOX_POLL_MS`` only as a fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import attrs
import trio

from arcyou_trio.bus import Bus, Channels
from arcyou_trio.config import Settings
from arcyou_trio.errors import BusError, StoreError
from arcyou_trio.protocol import codec, messages
from arcyou_trio.store import OutboxRow, Store
from arcyou_trio.store.notify import OutboxListener, listen_outbox
from arcyou_trio.worker.backoff import backoff_ms

log = logging.getLogger(__name__)


@attrs.define
class WorkerStats:
    claimed: int = 0
    published: int = 0
    failed: int = 0
    dead: int = 0
    loop_errors: int = 0


def encode_event(row: OutboxRow, timestamp: str) -> str:
    """The live event for one outbox row, encoded once for every recipient."""
    payload = row.payload
    return codec.dumps(
        {
            **messages.message_event(
                str(row.room_id),
                payload.get("message", {}),
                source=messages.SOURCE_LIVE,
                timestamp=timestamp,
            ),
            "type": row.type,
        }
    )


class OutboxWorker:
    def __init__(self, settings: Settings, store: Store, bus: Bus) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.channels = Channels(settings.pubsub_mode, settings.redis_channel_prefix)
        self.stats = WorkerStats()
        self.batch_done = trio.Event()
        self.listener: OutboxListener | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        s = self.settings
        log.info(
            "outbox worker %s started (pubsub %s, poll %d ms)",
            s.worker_id,
            s.pubsub_mode.value,
            s.outbox_poll_ms,
        )
        async with listen_outbox(s.listen_url) as listener:
            self.listener = listener
            task_status.started()
            while True:
                try:
                    handled = await self.run_once()
                except StoreError as exc:
                    self.stats.loop_errors += 1
                    log.warning("outbox loop: database error, retrying next loop: %s", exc)
                    handled = 0
                self.batch_done.set()
                self.batch_done = trio.Event()
                if handled < s.outbox_batch_size:
                    # Woken by the send transaction's NOTIFY; polling only as a fallback.
                    with trio.move_on_after(s.outbox_poll_ms / 1000):
                        await listener.wait()

    async def run_once(self) -> int:
        """Claim, publish and settle one batch; return how many rows were published."""
        s = self.settings
        rows = await self.store.claim_outbox(s.worker_id, s.outbox_batch_size, s.outbox_lease_ms)
        if not rows:
            return 0
        self.stats.claimed += len(rows)
        try:
            return await self._publish(rows)
        except BaseException:
            # Cancelled (shutdown) or a database error after the claim: hand the rows back so
            # another worker (or this one, next loop) takes them now rather than after the lease.
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self.store.release([r.id for r in rows], s.worker_id)
                except StoreError as exc:
                    log.warning("could not release %d claimed rows: %s", len(rows), exc)
            raise

    async def _publish(self, rows: Sequence[OutboxRow]) -> int:
        s = self.settings
        now = codec.iso_from_epoch_ms(time.time() * 1000)
        batch = []
        good = []
        for row in rows:
            try:
                batch.append((self.channels.for_room(str(row.room_id)), encode_event(row, now)))
                good.append(row)
            except (TypeError, ValueError) as exc:
                # A payload that cannot be encoded will never succeed: dead at once, not retried.
                await self.store.mark_failed([(row.id, 0)], s.worker_id, f"unencodable: {exc}", 1)
                self.stats.dead += 1
                log.error("outbox row %d cannot be encoded (%s); marked dead", row.id, exc)
        rows = good
        if not rows:
            return 0
        try:
            await self.bus.publish_many(batch)
        except BusError as exc:
            delays = [
                (r.id, backoff_ms(r.attempts + 1, s.backoff_base_ms, s.backoff_cap_ms))
                for r in rows
            ]
            dead = await self.store.mark_failed(delays, s.worker_id, str(exc), s.max_attempts)
            self.stats.failed += len(rows)
            self.stats.dead += dead
            log.warning(
                "publish of %d rows failed (%s); retry scheduled, %d now dead", len(rows), exc, dead
            )
            return 0
        await self.store.mark_published([r.id for r in rows], s.worker_id)
        self.stats.published += len(rows)
        return len(rows)


async def run_worker(settings: Settings) -> None:
    """The whole worker process: open the adapters, loop until cancelled."""
    async with Store.open(settings) as store, Bus.open(settings.redis_url) as bus:
        await OutboxWorker(settings, store, bus).serve()
