"""Faults: when they happen (:func:`schedule`, pure) and doing them (:class:`FaultRunner`).

Kinds:

- ``worker_kill``: SIGKILL one outbox worker, start a new one in its slot;
- ``gateway_kill``: SIGKILL one gateway, start a new one on the same port;
- ``redis_restart``: stop Redis (SIGTERM), keep it down ``down_s``, start it on the same port;
- ``pg_fast`` / ``pg_immediate``: ``pg_ctl stop -m fast`` / ``-m immediate``, down ``down_s``,
  start on the same port and data directory (crash recovery after ``immediate``);
- ``client_pause``: one client (of those with a small receive buffer) stops reading its socket
  for 3-8 s while the other members of its rooms send a burst of ``PAUSE_BURST`` messages, more
  than the kernel's buffers and the gateway's send buffer (``WS_SEND_HIGH_WATER``) hold for it.

Faults run one after another, never overlapping: each waits for its planned time *and* for the
previous fault's recovery to be measured. Recovery is measured by the probe
(:mod:`arcyou_harness.chaos.probe`): from the moment the fault struck until the first probe round
started after the component went down has completed. For ``client_pause`` it is the time from
the end of the pause until the client holds every message acked (to anyone) in its rooms during
the pause -- whether or not the gateway dropped it as a slow consumer meanwhile.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs
import trio

from arcyou_harness.chaos.client import Client, Outgoing
from arcyou_harness.chaos.model import TEXT_PAD
from arcyou_harness.chaos.probe import Probe
from arcyou_harness.chaos.stack import Stack

KINDS = ("worker_kill", "gateway_kill", "redis_restart", "pg_fast", "pg_immediate", "client_pause")
PAUSE_S = (3.0, 8.0)
PAUSE_BURST = 150


@attrs.frozen
class PlannedFault:
    at_s: float  # from the start of sending
    kind: str
    origin: str  # "schedule" | "random"


@attrs.define
class FaultResult:
    kind: str
    origin: str
    target: str = ""
    at_s: float = 0.0  # when it struck, from the start of sending
    down_s: float | None = None  # until the component was back (restart/respawn done)
    recovery_s: float | None = None  # None: not recovered within the bound
    reconnects: int = 0  # client connections opened during fault + recovery
    note: str = ""


def schedule(duration_s: float, random_faults: int, rng: random.Random) -> list[PlannedFault]:
    """Every kind once, evenly spaced over 10-75 % of the sending phase, in a fixed order; plus
    ``random_faults`` of random kinds at random times in 10-85 %."""
    first, last = 0.10 * duration_s, 0.75 * duration_s
    step = (last - first) / max(1, len(KINDS) - 1)
    planned = [PlannedFault(first + i * step, kind, "schedule") for i, kind in enumerate(KINDS)]
    for _ in range(random_faults):
        at = rng.uniform(0.10, 0.85) * duration_s
        planned.append(PlannedFault(at, rng.choice(KINDS), "random"))
    return sorted(planned, key=lambda f: f.at_s)


class FaultRunner:
    def __init__(
        self,
        stack: Stack,
        probe: Probe,
        clients: Sequence[Client],
        rng: random.Random,
        *,
        down_s: float,
        recovery_timeout_s: float,
    ) -> None:
        self.stack = stack
        self.probe = probe
        self.clients = clients
        self.pausers = [c for c in clients if c.rcvbuf is not None] or list(clients)
        self.rng = rng
        self.down_s = down_s
        self.recovery_timeout_s = recovery_timeout_s
        self.results: list[FaultResult] = []
        self.skipped: list[PlannedFault] = []
        self._bursts = 0

    def _connections(self) -> int:
        return sum(c.connections for c in (*self.clients, *self.probe.clients))

    async def run(self, planned: Sequence[PlannedFault], t0: float, stop_at: float) -> None:
        """Every planned fault due before ``stop_at`` (trio time); later ones are skipped."""
        for fault in planned:
            due = max(t0 + fault.at_s, trio.current_time())
            if due >= stop_at:
                self.skipped.append(fault)
                continue
            await trio.sleep_until(due)  # the fault schedule: deliberate
            before = self._connections()
            result = FaultResult(fault.kind, fault.origin)
            result.at_s = trio.current_time() - t0
            await self._inject(result, t0)
            result.reconnects = self._connections() - before
            self.results.append(result)
            _print(result)

    async def _inject(self, result: FaultResult, t0: float) -> None:
        struck = trio.current_time()
        kind = result.kind
        stack = self.stack
        if kind == "client_pause":
            await self._pause(result)
            return
        if kind in ("worker_kill", "gateway_kill"):
            slots = stack.workers if kind == "worker_kill" else stack.gateways
            slot = self.rng.choice(sorted(slots))
            victim = slots[slot]
            result.target = victim.name
            await stack.kill(victim)
            down_at = trio.current_time()
            fresh = stack.spawn_worker(slot) if kind == "worker_kill" else stack.spawn_gateway(slot)
            result.note = f"replaced by {fresh.name}"
            await stack.wait_ready(fresh)
        elif kind == "redis_restart":
            result.target = f"redis :{stack.redis.port}"
            down_at = await stack.restart_redis(self.down_s)
        else:
            mode = "fast" if kind == "pg_fast" else "immediate"
            result.target = f"postgres :{stack.pg.port} -m {mode}"
            down_at = await stack.restart_postgres(mode, self.down_s)
        result.down_s = trio.current_time() - struck
        done = await self.probe.recovered_after(down_at, self.recovery_timeout_s)
        if done is not None:
            result.recovery_s = done - struck

    async def _pause(self, result: FaultResult) -> None:
        client = self.rng.choice(self.pausers)
        seconds = self.rng.uniform(*PAUSE_S)
        result.target = f"{client.name} for {seconds:.1f} s"
        closed_before = len(client.ended)
        started = trio.current_time()
        acked_before = len(client.rec.ack_log)
        client.pause(seconds)
        burst = self._burst(client)
        await trio.sleep(seconds)  # the pause itself: deliberate
        resumed = trio.current_time()
        rooms = set(client.rooms)
        owed: dict[str, set[int]] = {}
        for _at, room, mid in client.rec.ack_log[acked_before:]:
            if room in rooms:
                owed.setdefault(room, set()).add(mid)
        result.down_s = resumed - started
        with trio.move_on_after(self.recovery_timeout_s):
            while client.missing(owed):
                await client.progress.wait()
            result.recovery_s = trio.current_time() - resumed
        ends = client.ended[closed_before:]
        result.note = f"burst of {burst}, {sum(len(v) for v in owed.values())} owed" + (
            f"; connection ended: {ends[0]}" if ends else "; connection kept"
        )

    def _burst(self, paused: Client) -> int:
        """Hand ``PAUSE_BURST`` extra messages to the other members of ``paused``'s rooms."""
        rooms = set(paused.rooms)
        mates = [c for c in self.clients if c is not paused and rooms & set(c.rooms)]
        if not mates:
            return 0
        for _ in range(PAUSE_BURST):
            mate = self.rng.choice(mates)
            room = self.rng.choice(sorted(rooms & set(mate.rooms)))
            self._bursts += 1
            temp_id = f"{mate.name}-b{self._bursts}"
            mate.enqueue(Outgoing(temp_id, room, f"burst {temp_id} {TEXT_PAD}"))
        return PAUSE_BURST


def _print(result: FaultResult) -> None:
    recovery = "not recovered" if result.recovery_s is None else f"{result.recovery_s:.2f} s"
    print(
        f"  fault at {result.at_s:6.1f} s: {result.kind:<13} {result.target:<28} "
        f"recovery {recovery}  ({result.note})",
        flush=True,
    )
