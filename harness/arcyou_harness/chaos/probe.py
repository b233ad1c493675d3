"""The probe: measures how long the system takes to deliver again after a fault.

Two clients of one probe user, both members of a probe room, each pinned to one gateway (the
gateways keep their ports across restarts). The probe runs *rounds* back to back: in a round each
client sends one message (with the usual retry discipline), and the round is complete when both
messages are acked and each has arrived *live* on both connections -- a send through every
gateway, the outbox worker, Redis and the fan-out of every gateway, end to end (a copy that
reaches a probe client through the backfill of its resume after a reconnect counts too: that
client's path works again). A round that is not complete within ``ROUND_TIMEOUT_S`` is
abandoned (its sends still retry until acked; the next round starts once they are).

:meth:`Probe.recovered_after` answers "when did the first round that *started* after time ``t``
complete?": the fault runner's recovery time. The probe's messages are checked like all others.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import trio

from arcyou_harness.chaos.client import Client, Outgoing
from arcyou_harness.chaos.model import PROBE_PREFIX, Recorder

ROUND_TIMEOUT_S = 3.0
ROUND_GAP_S = 0.2


@attrs.define
class Round:
    started: float
    temp_ids: tuple[str, ...]
    message_ids: dict[str, int] = attrs.Factory(dict)
    acked_at: list[float] = attrs.Factory(list)
    delivered_at: list[float] = attrs.Factory(list)  # one per (message, probe client)
    sources: set[str] = attrs.Factory(set)
    done_at: float | None = None

    def timeline(self, t0: float) -> list[object]:
        """[started, last ack, last delivery, done] in seconds from ``t0``, and the sources."""
        points = (
            self.started,
            max(self.acked_at, default=None),
            max(self.delivered_at, default=None),
            self.done_at,
        )
        out: list[object] = [None if p is None else round(p - t0, 3) for p in points]
        return out + sorted(self.sources)


class Probe:
    def __init__(
        self, urls: list[str], user: str, room: str, rec: Recorder, rng: random.Random
    ) -> None:
        self.room = room
        self.rec = rec
        self.clients = [
            Client(
                f"{PROBE_PREFIX}-{i}",
                user,
                (room,),
                _fixed(url),
                rec,
                random.Random(rng.random()),
                on_event=self._on_event,
                on_ack=self._on_ack,
                trace=True,
            )
            for i, url in enumerate(urls)
        ]
        self.got: dict[str, set[int]] = {c.name: set() for c in self.clients}
        self.rounds: list[Round] = []
        self._current: Round | None = None
        self._changed = trio.Event()

    def _on_event(self, client: Client, room: str, mid: int, source: str) -> None:
        if room == self.room:
            self.got[client.name].add(mid)
            current = self._current
            if current is not None and mid in current.message_ids.values():
                current.delivered_at.append(trio.current_time())
                current.sources.add(source)
            self._update()

    def _on_ack(self, client: Client, temp_id: str, message_id: int) -> None:
        current = self._current
        if current is not None and temp_id in current.temp_ids:
            current.message_ids.setdefault(temp_id, message_id)
            current.acked_at.append(trio.current_time())
            self._update()

    def _update(self) -> None:
        current = self._current
        if current is None or current.done_at is not None:
            return
        if len(current.message_ids) < len(current.temp_ids):
            return
        ids = set(current.message_ids.values())
        if all(ids <= got for got in self.got.values()):
            current.done_at = trio.current_time()
            self._changed.set()
            self._changed = trio.Event()

    async def run_rounds(self, stop: trio.Event) -> None:
        """Rounds until ``stop`` is set (the caller's scope bounds the last one)."""
        n = 0
        while not stop.is_set():
            n += 1
            temp_ids = tuple(f"{c.name}-r{n}" for c in self.clients)
            current = Round(trio.current_time(), temp_ids)
            self.rounds.append(current)
            self._current = current
            for client, temp_id in zip(self.clients, temp_ids, strict=True):
                client.enqueue(Outgoing(temp_id, self.room, f"probe round {n}"))
            with trio.move_on_after(ROUND_TIMEOUT_S):
                while current.done_at is None:
                    await self._changed.wait()
            for client in self.clients:
                await client.idle.wait()  # abandoned round: its sends still finish first
            await trio.sleep(ROUND_GAP_S)  # pacing: deliberate

    async def recovered_after(self, t: float, within_s: float) -> float | None:
        """The completion time of the first round started at or after ``t``, or None if there
        is none within ``within_s`` from now."""
        with trio.move_on_after(within_s):
            while True:
                for r in self.rounds:
                    if r.started >= t and r.done_at is not None:
                        return r.done_at
                await self._changed.wait()
        return None


def _fixed(url: str) -> Callable[[], str]:
    return lambda: url
