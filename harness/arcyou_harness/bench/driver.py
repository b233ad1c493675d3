"""The benchmark's side of the load generators: start them, hand out the start signal, collect.

A load is a list of loadgen specs (one per process, see :mod:`arcyou_harness.bench.loadgen`).
:func:`run_load` starts every process, waits until all report ``ready`` (connections open,
authenticated, joined), optionally calls ``after_ready`` (e.g. to measure the gateway's memory),
sends everyone the same ``go`` with a start time a moment ahead, samples the system's CPU over
the measurement window, and returns the processes' results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from arcyou_harness.common import procs
from arcyou_harness.common.system import (
    CpuSnapshot,
    System,
    busiest_others,
    cpu_share,
    cpu_snapshot,
)

SATURATED = 0.9  # a generator above this fraction of one core is measuring itself


class LoadError(Exception):
    pass


class Loadgen:
    def __init__(self, index: int, proc: trio.Process, log_path: Path) -> None:
        self.index = index
        self.proc = proc
        self.log_path = log_path
        self._buf = bytearray()

    @classmethod
    async def start(cls, index: int, spec: dict[str, Any], log_path: Path) -> Loadgen:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "arcyou_harness.bench.loadgen"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                # Not child_setup: this forks on a worker thread (see there). A loadgen exits
                # when its stdin closes instead.
                preexec_fn=procs.child_limits,
            )
        finally:
            os.close(log)
        gen = cls(index, proc, log_path)
        await gen.send(spec)
        return gen

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    async def expect(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while b"\n" not in self._buf:
            chunk = await self.proc.stdout.receive_some(1 << 20)
            if not chunk:
                await self.proc.wait()
                raise LoadError(
                    f"loadgen {self.index} exited with code {self.proc.returncode} before"
                    f" '{event}':\n{self.log_tail()}"
                )
            self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf[:] = rest
        obj: dict[str, Any] = json.loads(line)
        if obj.get("event") != event:
            raise LoadError(f"loadgen {self.index}: expected {event!r}, got {obj.get('event')!r}")
        return obj

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        with trio.move_on_after(5):
            await self.proc.wait()


@attrs.define
class LoadOutcome:
    readies: list[dict[str, Any]]
    results: list[dict[str, Any]]
    start: float
    end: float
    measure_from: float
    cpu: dict[str, float]  # system parts, fraction of one core over the measurement window
    other_processes: list[str]  # the busiest processes not ours over the window
    outbox_backlog: int | None  # outbox rows pending or in progress at the end of the window
    pubsub_backlog_bytes: int | None  # Redis output buffers of subscribers, same moment
    warnings: list[str]

    @property
    def connected(self) -> int:
        return sum(int(r["connected"]) for r in self.readies)

    @property
    def failed(self) -> int:
        return sum(int(r["failed"]) for r in self.readies)

    def failures(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.readies:
            for reason, n in r["failures"].items():
                out[reason] = out.get(reason, 0) + int(n)
        return out

    def generator_cpu(self) -> list[float]:
        """Each generator's CPU as a fraction of one core: over the measurement window, or from
        the start signal to its result when there was no real window (a single message)."""
        return [_generator_share(r) for r in self.results]


def _generator_share(result: dict[str, Any]) -> float:
    wall = float(result["wall_window_s"])
    if wall >= 0.5:
        return float(result["cpu_window_s"]) / wall
    run = float(result["wall_run_s"])
    return float(result["cpu_run_s"]) / run if run > 0 else 0.0


async def _sample_cpu(
    system: System,
    pids: list[int],
    measure_from: float,
    end: float,
    out: list[CpuSnapshot],
    backlog: list[int],
) -> None:
    offset = trio.current_time() - time.time()
    await trio.sleep_until(measure_from + offset)
    out.append(cpu_snapshot(system, pids))
    await trio.sleep_until(end + offset)
    out.append(cpu_snapshot(system, pids))
    # Where the live path was behind when the window closed: rows committed but not published
    # (the workers), events published but not yet read by a gateway (its subscription).
    backlog.append(await trio.to_thread.run_sync(system.outbox_backlog))
    backlog.append(await trio.to_thread.run_sync(system.pubsub_backlog_bytes))


async def run_load(
    system: System,
    specs: list[dict[str, Any]],
    *,
    name: str,
    duration_s: float,
    warmup_s: float = 0.0,
    setup_timeout_s: float = 300.0,
    drain_timeout_s: float = 120.0,
    after_ready: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
) -> LoadOutcome:
    """Run one load: every spec in its own process, one common start signal."""
    gens: list[Loadgen] = []
    warnings: list[str] = []
    try:
        for i, spec in enumerate(specs):
            gens.append(await Loadgen.start(i, spec, system.run_dir / f"loadgen-{name}-{i}.log"))
        readies: list[dict[str, Any]] = []
        with trio.fail_after(setup_timeout_s):
            for gen in gens:
                readies.append(await gen.expect("ready"))
        if after_ready is not None:
            await after_ready(readies)
        start = time.time() + 0.5
        measure_from = start + warmup_s
        end = measure_from + duration_s
        go = {"cmd": "go", "start": start, "measure_from": measure_from, "end": end}
        for gen in gens:
            await gen.send(go)
        snapshots: list[CpuSnapshot] = []
        backlog: list[int] = []
        results: list[dict[str, Any]] = []
        async with trio.open_nursery() as nursery:
            if duration_s > 0:
                pids = [gen.proc.pid for gen in gens]
                nursery.start_soon(_sample_cpu, system, pids, measure_from, end, snapshots, backlog)
            drain_s = max(float(spec.get("max_drain_s", 30)) for spec in specs)
            with trio.fail_after(end - time.time() + max(drain_timeout_s, drain_s + 60)):
                for gen in gens:
                    results.append(await gen.expect("result"))
        cpu = cpu_share(snapshots[0], snapshots[1]) if len(snapshots) == 2 else {}
        others = busiest_others(snapshots[0], snapshots[1]) if len(snapshots) == 2 else []
        for gen, result in zip(gens, results, strict=True):
            share = _generator_share(result)
            if share > SATURATED:
                warnings.append(
                    f"WARNING: {name}: load generator {gen.index} used {share:.0%} of a core"
                    " over the window: it is saturated, the figures are a lower bound"
                )
        for w in warnings:
            print(w, file=sys.stderr)
        return LoadOutcome(
            readies,
            results,
            start,
            end,
            measure_from,
            cpu,
            others,
            backlog[0] if backlog else None,
            backlog[1] if len(backlog) > 1 else None,
            warnings,
        )
    finally:
        with trio.CancelScope(shield=True):
            for gen in gens:
                await gen.stop()
