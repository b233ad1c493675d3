"""The phases of a chaos run, inside ``trio.run`` (servers already up, see :mod:`.cli`).

1. start the gateways and workers, connect every client (auth + join) and the probe;
2. *sending*: each client sends its share of the messages, paced evenly over ``duration_s``,
   while the fault runner works through its schedule and the probe measures recovery;
3. *drain*: no more faults; wait until every message begun has been acked (bounded);
4. *final resume*: every client closes its connection, opens a new one to a random gateway,
   resumes all its rooms and waits until it holds every message the database has for them
   (bounded);
5. read the database and compute the figures (:func:`arcyou_harness.chaos.check.check`).

Every wait is bounded; on any failure the nursery cancels the clients and the caller stops every
process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from arcyou_harness.chaos.check import Figures, check
from arcyou_harness.chaos.client import Client, Outgoing
from arcyou_harness.chaos.faults import FaultRunner, schedule
from arcyou_harness.chaos.model import TEXT_PAD, Plan, Recorder
from arcyou_harness.chaos.probe import Probe
from arcyou_harness.chaos.stack import READY_TIMEOUT_S, Stack

CONNECT_ALL_S = 30.0


@attrs.frozen
class Options:
    messages: int
    clients: int
    rooms: int
    duration_s: float
    seed: int
    random_faults: int
    down_s: float
    recovery_timeout_s: float
    drain_s: float
    final_s: float


@attrs.define
class Outcome:
    figures: Figures
    faults: list[dict[str, Any]]
    skipped_faults: list[dict[str, Any]]
    phases_s: dict[str, float]
    final_incomplete: list[str]
    #: [started, last ack, last delivery, done, sources...] per probe round (seconds from start)
    probe_rounds: list[list[object]]
    #: probe client -> [seconds from the start, what]: its connections, sends and replies
    probe_trace: dict[str, list[tuple[float, str]]]


async def _feed(client: Client, count: int, t0: float, duration_s: float) -> None:
    """Hand ``count`` messages to ``client`` evenly over ``duration_s`` from ``t0``."""
    if count == 0:
        return
    period = duration_s / count
    phase = client.rng.uniform(0, period)
    for k in range(count):
        await trio.sleep_until(t0 + phase + k * period)  # the send schedule: deliberate
        room = client.rng.choice(client.rooms)
        temp_id = f"{client.name}-{k}"
        client.enqueue(Outgoing(temp_id, room, f"chaos {temp_id} {TEXT_PAD}"))


async def _all_set(events: Sequence[trio.Event]) -> None:
    for event in events:
        await event.wait()


async def run(opts: Options, stack: Stack, plan: Plan) -> Outcome:
    rec = Recorder()
    rng = random.Random(opts.seed)
    phases: dict[str, float] = {}
    started = time.monotonic()

    for slot in range(len(stack.gateway_ports)):
        stack.spawn_gateway(slot)
    for slot in range(stack.worker_slots):
        stack.spawn_worker(slot)
    with trio.fail_after(READY_TIMEOUT_S + 5):
        async with trio.open_nursery() as nursery:
            for service in list(stack.system.services):
                nursery.start_soon(stack.wait_ready, service)

    urls = stack.urls()
    clients = [
        Client(
            m.name,
            m.user,
            m.rooms,
            _random_url(urls, random.Random(rng.random())),
            rec,
            random.Random(rng.random()),
            small_rcvbuf=m.pauser,
        )
        for m in plan.members
    ]
    probe = Probe(urls, plan.probe_user, plan.probe_room, rec, random.Random(rng.random()))
    everyone = [*clients, *probe.clients]
    runner = FaultRunner(
        stack,
        probe,
        clients,
        random.Random(rng.random()),
        down_s=opts.down_s,
        recovery_timeout_s=opts.recovery_timeout_s,
    )
    planned = schedule(opts.duration_s, opts.random_faults, random.Random(rng.random()))
    incomplete: list[str] = []

    async with trio.open_nursery() as nursery:
        load_scopes = []
        for client in everyone:
            scope = trio.CancelScope()
            load_scopes.append(scope)
            nursery.start_soon(_load, client, scope)
        with trio.fail_after(CONNECT_ALL_S):
            await _all_set([c.connected for c in everyone])
        phases["setup_s"] = time.monotonic() - started
        print(f"  {len(everyone)} clients connected; sending for {opts.duration_s:.0f} s")

        t0 = trio.current_time()
        stop_probe = trio.Event()
        probe_scope = trio.CancelScope()
        nursery.start_soon(_scoped, probe_scope, probe.run_rounds, stop_probe)
        for client, member in zip(clients, plan.members, strict=True):
            nursery.start_soon(_feed, client, member.messages, t0, opts.duration_s)
        await runner.run(planned, t0, t0 + opts.duration_s)
        await trio.sleep_until(t0 + opts.duration_s)  # end of the sending phase: deliberate
        phases["sending_s"] = trio.current_time() - t0

        t1 = trio.current_time()
        stop_probe.set()
        with trio.move_on_after(opts.drain_s):
            await _all_set([c.idle for c in everyone])
        phases["drain_s"] = trio.current_time() - t1
        probe_scope.cancel()
        for scope in load_scopes:
            scope.cancel()

        t2 = trio.current_time()
        expected = _by_room(await trio.to_thread.run_sync(stack.stored_messages))
        with trio.move_on_after(opts.final_s):
            async with trio.open_nursery() as final:
                for client in everyone:
                    final.start_soon(_final, client, expected)
        phases["final_resume_s"] = trio.current_time() - t2
        incomplete = [
            f"{c.name}: {c.missing(expected)} missing" for c in everyone if c.missing(expected)
        ]
        nursery.cancel_scope.cancel()

    rows = await trio.to_thread.run_sync(stack.stored_messages)
    outbox = await trio.to_thread.run_sync(stack.outbox_counts)
    enqueued = sum(c.enqueued for c in everyone)
    figures = check(rec, plan.membership(len(probe.clients)), rows, outbox, enqueued=enqueued)
    _add_info(figures, rec, clients, probe)
    phases["total_s"] = time.monotonic() - started
    return Outcome(
        figures,
        [attrs.asdict(r) for r in runner.results],
        [attrs.asdict(f) for f in runner.skipped],
        {k: round(v, 1) for k, v in phases.items()},
        incomplete,
        [r.timeline(t0) for r in probe.rounds],
        {c.name: [(round(t - t0, 3), w) for t, w in c.trace or []] for c in probe.clients},
    )


def _random_url(urls: list[str], rng: random.Random) -> Callable[[], str]:
    return lambda: rng.choice(urls)


async def _load(client: Client, scope: trio.CancelScope) -> None:
    with scope:
        await client.run()


async def _scoped(scope: trio.CancelScope, fn: Any, *args: Any) -> None:
    with scope:
        await fn(*args)


async def _final(client: Client, expected: Mapping[str, set[int]]) -> None:
    client.pause_until = 0.0
    await client.run(final=expected)


def _by_room(rows: Sequence[Any]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for row in rows:
        out.setdefault(row.room, set()).add(row.id)
    return out


def _add_info(figures: Figures, rec: Recorder, clients: list[Client], probe: Probe) -> None:
    info = figures.info
    info["send_errors"] = dict(rec.send_errors)
    info["join_errors"] = dict(rec.join_errors)
    info["connection_ends"] = dict(rec.closes.most_common(12))
    info["connect_failures"] = dict(rec.connect_failures)
    info["malformed_frames"] = rec.malformed
    info["pauses"] = rec.pauses
    info["probe_rounds"] = len(probe.rounds)
    info["probe_rounds_completed"] = sum(1 for r in probe.rounds if r.done_at is not None)
    info["reconnects"] = sum(c.connections for c in clients) - len(clients)
