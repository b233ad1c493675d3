"""``python -m arcyou_harness.bench``: start a system, run the scenarios, print one table.

Examples::

    python -m arcyou_harness.bench --quick                 # about two minutes
    python -m arcyou_harness.bench --out bench.json        # the full run, under ten minutes
    python -m arcyou_harness.bench --scenarios 1,2,5 --gateways 2 --workers 2
    python -m arcyou_harness.bench --database-url postgresql://... --redis-url redis://...

Everything listens on 127.0.0.1 only. See docs/benchmarks.md for how to read the output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio

from arcyou_harness.bench import report, scenarios
from arcyou_harness.common import procs
from arcyou_harness.common.system import RAISED_LIMITS, System

DEFAULT_POLL_MS = 10


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m arcyou_harness.bench", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes, shorter (~2 min)")
    p.add_argument("--scenarios", default="1,2,3,4,5", help="which scenarios (1,2,3,4,5)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--database-url", help="PostgreSQL server to use (a scratch database)")
    p.add_argument("--redis-url", help="Redis server to use")
    p.add_argument("--gateways", type=int, default=1, help="gateway processes (1)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    p.add_argument("--duration-s", type=float, help="measured seconds per scenario")
    p.add_argument("--rooms", type=int, default=50, help="saturation rooms (50)")
    p.add_argument("--members", type=int, default=4, help="members per saturation room (4)")
    p.add_argument("--loadgens", type=int, default=2, help="load generator processes (2)")
    p.add_argument("--offered-rate", type=float, help="scenario 2 rate, msg/s (default: 50%% of 1)")
    p.add_argument("--fanout-sizes", help="scenario 3 room sizes (1000,5000; quick: 1000)")
    p.add_argument("--fanout-rate", type=float, default=20.0, help="scenario 3 msg/s (20)")
    p.add_argument("--connections", type=int, help="scenario 4 (20000; quick: 2000)")
    p.add_argument(
        "--poll-ms", type=int, default=DEFAULT_POLL_MS, help="OUTBOX_POLL_MS for the workers (10)"
    )
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs, data)")
    p.add_argument("--render", type=Path, help="print the report of a saved --out file and exit")
    return p


def _sizes(args: argparse.Namespace) -> scenarios.Sizes:
    quick = args.quick
    duration = args.duration_s
    fanout = (
        tuple(int(x) for x in args.fanout_sizes.split(",") if x)
        if args.fanout_sizes
        else ((1000,) if quick else (1000, 5000))
    )
    return scenarios.Sizes(
        rooms=args.rooms,
        members=args.members,
        duration_s=duration or (5.0 if quick else 15.0),
        warmup_s=1.0 if quick else 3.0,
        paced_fraction=0.5,
        fanout_sizes=fanout,
        fanout_rate=args.fanout_rate,
        fanout_duration_s=duration or (5.0 if quick else 10.0),
        connections=args.connections or (2000 if quick else 20000),
        pgbench_s=duration or (5.0 if quick else 10.0),
        redis_requests=100_000 if quick else 200_000,
        loadgens=max(1, args.loadgens),
        connect_concurrency=128,
    )


def _worker_listens(system: System) -> bool:
    with psycopg.connect(system.database_url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN %%'"
        ).fetchone()
    return bool(row and row[0])


def _git_state() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split("\n")
    except OSError:
        return "?"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


async def _scenarios(bench: scenarios.Bench, wanted: set[int], args: argparse.Namespace) -> None:
    z = bench.sizes
    errors: dict[str, str] = bench.results.setdefault("errors", {})

    async def guarded(key: str, fn: Any, *a: Any) -> None:
        print(f"\n== {key} {' '.join(map(str, a))}".rstrip(), file=sys.stderr)
        t0 = time.monotonic()
        try:
            out = await fn(bench, *a)
        except Exception as exc:
            errors[key] = f"{type(exc).__name__}: {exc}"
            print(f"FAILED: {key}: {errors[key]}", file=sys.stderr)
            traceback.print_exc()
            return
        out["elapsed_s"] = round(time.monotonic() - t0, 1)
        rows = report.scenario_rows({key: [out] if key == "fanout" else out})
        print(report.scenario_table(rows), flush=True)
        print(f"   ({time.monotonic() - t0:.0f} s)", file=sys.stderr)

    if 1 in wanted:
        await guarded("saturation", scenarios.saturation)
    if 2 in wanted:
        sat = bench.results.get("saturation")
        if args.offered_rate:
            offered, basis = args.offered_rate, "--offered-rate"
        elif sat and sat["durable_sends_per_s"] > 0:
            offered = sat["durable_sends_per_s"] * z.paced_fraction
            basis = f"{z.paced_fraction:.0%} of scenario 1's durable rate"
        else:
            offered, basis = 200.0, "default; scenario 1 not run"
        await guarded("paced", scenarios.paced, offered, basis)
    if 3 in wanted:
        for size in z.fanout_sizes:
            await guarded("fanout", scenarios.fanout, size)
    if 4 in wanted:
        await guarded("connections", scenarios.connections, z.connections)
    if 5 in wanted:
        await guarded("ceilings", scenarios.ceilings_run)


async def _amain(
    args: argparse.Namespace, sizes: scenarios.Sizes, system: System, started: float
) -> bool:
    """Run the scenarios and print the report; False if a scenario failed."""
    wanted = {int(x) for x in args.scenarios.split(",") if x.strip()}
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    gateways = [system.start_service("gateway", f"gateway-{i}") for i in range(args.gateways)]
    for i in range(args.workers):
        system.start_service("worker", f"worker-{i}")
    for service in list(system.services):
        await trio.to_thread.run_sync(system.wait_ready, service)
    listens = await trio.to_thread.run_sync(_worker_listens, system)
    env = system.service_env()
    bench = scenarios.Bench(system, sizes, gateways, int(env.get("DB_POOL_SIZE", "8")))
    servers = await trio.to_thread.run_sync(system.server_versions)
    config = {
        "gateways": args.gateways,
        "workers": args.workers,
        "OUTBOX_POLL_MS": env["OUTBOX_POLL_MS"],
        "worker LISTEN/NOTIFY": "yes" if listens else "no (polling)",
        "PUBSUB_MODE": env.get("PUBSUB_MODE", "global"),
        "DB_POOL_SIZE": env.get("DB_POOL_SIZE", "8"),
        **RAISED_LIMITS,
    }
    print(
        "arcyou-trio bench: raised the gateways' limits for its own load: "
        + ", ".join(f"{k}={v}" for k, v in RAISED_LIMITS.items())
        + f"; workers poll every OUTBOX_POLL_MS={env['OUTBOX_POLL_MS']}"
        + (" and LISTEN for NOTIFY" if listens else " (no LISTEN/NOTIFY seen)"),
        file=sys.stderr,
    )
    try:
        await _scenarios(bench, wanted, args)
    finally:
        elapsed = time.monotonic() - started
        out = {
            "command": " ".join(["python -m arcyou_harness.bench", *sys.argv[1:]]),
            "elapsed_s": elapsed,
            "machine": procs.machine_info(),
            "loadavg": {
                "start": load_start,
                "end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            },
            "servers": servers,
            "config": config,
            "code": _git_state(),
            "sizes": attrs.asdict(sizes),
            "results": bench.results,
            "notes": [f"{k} failed: {v}" for k, v in bench.results.get("errors", {}).items()],
        }
        out["ratios"] = [{"ratio": n, "value": v} for n, v in report.ratios(bench.results)]
        out["targets"] = report.targets(bench.results)
        text = report.render(out)
        out["table"] = text
        print()
        print(text)
        if args.out:
            args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
            print(f"\nwrote {args.out}", file=sys.stderr)
    return not bench.results.get("errors")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        saved["targets"] = report.targets(saved["results"])
        print(report.render(saved))
        return 0
    sizes = _sizes(args)
    procs.raise_nofile()
    run_dir = Path(tempfile.mkdtemp(prefix="arcyou-bench-"))
    env_extra = {
        "OUTBOX_POLL_MS": str(args.poll_ms),
        "REDIS_CHANNEL_PREFIX": f"arcyou-bench-{os.getpid()}:",
    }
    system = System(run_dir, env_extra)
    print(f"arcyou-trio bench: run directory {run_dir}", file=sys.stderr)
    ok = False
    all_ran = False
    started = time.monotonic()
    try:
        # Here, on the main thread: the servers die with the thread that started them.
        system.start_servers(args.database_url, args.redis_url)
        all_ran = trio.run(_amain, args, sizes, system, started)
        ok = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        system.stop()
        if ok and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"logs and data kept in {run_dir}", file=sys.stderr)
    return 0 if ok and all_ran else 1
