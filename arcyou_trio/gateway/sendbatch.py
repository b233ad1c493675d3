"""Group commit for the gateway: sends that arrive together are stored in one transaction.

Every ``send`` goes through here. Each connection hands its send to the :class:`SendCoalescer`
and waits for the outcome; a few flusher tasks each take everything queued (up to
``max_batch``) and store it with one transaction (:func:`arcyou_trio.store.send.send_messages`).
Under light load a batch is a single message and nothing waits; under heavy load one commit
carries many messages, which is what lets durable sends/s exceed one-message-per-transaction.
The reply still goes out only after the batch has committed, and per-room id order holds (see
the store module).

A send waits at most the store's timeout (``DB_TIMEOUT_MS``) in all, queueing included, then
raises :class:`~arcyou_trio.errors.StoreTimeout`. Its message may still be stored by the batch
it joined: a retry with the same temp_id gets it.
"""

from __future__ import annotations

import logging

import attrs
import trio

from arcyou_trio.errors import StoreError, StoreTimeout, StoreUnavailable
from arcyou_trio.store import NewMessage, Refusal, Sent, Store

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class _Pending:
    message: NewMessage
    done: trio.Event = attrs.Factory(trio.Event)
    result: Sent | Refusal | None = None
    error: StoreError | None = None


class SendCoalescer:
    def __init__(self, store: Store, *, max_batch: int = 256, flushers: int = 4) -> None:
        self.store = store
        self.max_batch = max_batch
        self.flushers = flushers
        # Bounded: when every flusher is busy and this is full, senders wait (backpressure on
        # their own connection only; each connection has one request in flight at most).
        self._send, self._receive = trio.open_memory_channel[_Pending](max_batch * flushers)
        self.batches = 0
        self.messages = 0

    async def send(self, message: NewMessage) -> Sent | Refusal:
        """Store ``message`` with the next batch; raises StoreError (StoreTimeout past the
        store's timeout)."""
        pending = _Pending(message)
        with trio.move_on_after(self.store.timeout_s) as waited:
            await self._send.send(pending)
            await pending.done.wait()
        if waited.cancelled_caught:
            raise StoreTimeout(f"send not stored within {self.store.timeout_s * 1000:.0f} ms")
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.flushers):
                nursery.start_soon(self._flush_forever)
            task_status.started()

    async def _flush_forever(self) -> None:
        while True:
            batch = [await self._receive.receive()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                results = await self.store.send_messages([p.message for p in batch])
            except StoreError as exc:
                for pending in batch:
                    pending.error = exc
            else:
                for pending, result in zip(batch, results, strict=True):
                    pending.result = result
                self.batches += 1
                self.messages += len(batch)
            finally:
                for pending in batch:
                    if pending.result is None and pending.error is None:
                        # Cancelled mid-batch (shutdown): the sender must not wait forever.
                        pending.error = StoreUnavailable("send interrupted by shutdown")
                    pending.done.set()
