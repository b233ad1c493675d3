"""``python -m arcyou_harness.chaos``: arguments, profiles, the servers' lifetime and the exit code.

Examples::

    python -m arcyou_harness.chaos --profile ci            # about a minute (CI)
    python -m arcyou_harness.chaos --out chaos.json        # the full run: >= 10,000 messages
    python -m arcyou_harness.chaos --messages 20000 --duration-s 400 --seed 7

Exit code 0 only when every zero-figure is 0 (see :mod:`arcyou_harness.chaos.check`); 1 when one is
not, or when the harness could not complete its run (then the run directory with every process's
log is kept and named).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from arcyou_harness.chaos import report
from arcyou_harness.chaos.model import Plan
from arcyou_harness.chaos.run import Options, Outcome, run
from arcyou_harness.chaos.stack import Stack
from arcyou_harness.common import procs

PROFILES: dict[str, dict[str, Any]] = {
    # ~1 minute: every fault kind once, one random extra.
    "ci": {
        "messages": 1200,
        "duration_s": 35.0,
        "random_faults": 1,
        "recovery_timeout_s": 15.0,
        "drain_s": 20.0,
        "final_s": 20.0,
    },
    # several minutes, >= 10,000 messages.
    "full": {
        "messages": 10_000,
        "duration_s": 240.0,
        "random_faults": 8,
        "recovery_timeout_s": 30.0,
        "drain_s": 60.0,
        "final_s": 60.0,
    },
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m arcyou_harness.chaos", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--profile", choices=sorted(PROFILES), default="full", help="(full)")
    p.add_argument("--messages", type=int, help="messages to send in all (ci 1200, full 10000)")
    p.add_argument("--clients", type=int, default=24, help="simulated clients (24)")
    p.add_argument("--rooms", type=int, default=6, help="rooms; each client is in 1-2 (6)")
    p.add_argument("--duration-s", type=float, help="sending phase (ci 35, full 240)")
    p.add_argument("--seed", type=int, help="random seed (default: random)")
    p.add_argument("--random-faults", type=int, help="faults at random points, beyond one of each")
    p.add_argument("--down-s", type=float, default=1.0, help="Redis/PostgreSQL outage (1.0)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs, data)")
    return p


def _options(args: argparse.Namespace) -> Options:
    prof = PROFILES[args.profile]

    def pick(name: str) -> Any:
        value = getattr(args, name, None)
        return prof[name] if value is None else value

    return Options(
        messages=pick("messages"),
        clients=args.clients,
        rooms=args.rooms,
        duration_s=pick("duration_s"),
        seed=args.seed if args.seed is not None else random.randrange(2**31),
        random_faults=pick("random_faults"),
        down_s=args.down_s,
        recovery_timeout_s=prof["recovery_timeout_s"],
        drain_s=prof["drain_s"],
        final_s=prof["final_s"],
    )


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C does."""


async def _stop_on_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            raise Stopped(signal.Signals(signum).name)


async def _bounded(opts: Options, stack: Stack, plan: Plan) -> Outcome:
    # Each phase bounds itself; this is the backstop for the whole run.
    limit = 120 + 2 * opts.duration_s + opts.drain_s + opts.final_s + 2 * opts.recovery_timeout_s
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal)
        with trio.fail_after(limit):
            outcome = await run(opts, stack, plan)
        nursery.cancel_scope.cancel()
    return outcome


def _contains(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(kind) is not None
    return isinstance(exc, kind)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    opts = _options(args)
    if opts.clients < 1 or opts.rooms < 1 or opts.messages < 0 or opts.duration_s <= 0:
        parser.error("--clients and --rooms must be >= 1, --messages >= 0, --duration-s > 0")
    plan = Plan.build(
        clients=opts.clients, rooms=opts.rooms, messages=opts.messages, seed=opts.seed
    )
    procs.raise_nofile()
    run_dir = Path(tempfile.mkdtemp(prefix="arcyou-chaos-"))
    stack = Stack(run_dir)
    print(
        f"arcyou-trio chaos ({args.profile}): seed {opts.seed}, run directory {run_dir}",
        flush=True,
    )
    started = time.monotonic()
    outcome: Outcome | None = None
    try:
        # On the main thread: every server and process dies with the thread that started it.
        stack.start_servers(plan)
        outcome = trio.run(_bounded, opts, stack, plan)
    except BaseException as exc:  # Ctrl-C arrives inside exception groups from trio's nurseries
        if _contains(exc, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        elif _contains(exc, Stopped):
            print("stopped by a signal", file=sys.stderr)
        elif isinstance(exc, Exception):
            traceback.print_exc()
            print("chaos harness failed before its figures were complete", file=sys.stderr)
        else:
            raise
    finally:
        stack.stop()
    ok = outcome is not None and outcome.figures.ok
    if ok and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        print(f"logs and data kept in {run_dir}", file=sys.stderr)
    if outcome is None:
        return 1
    doc = report.document(
        args.profile,
        attrs.asdict(opts),
        outcome.figures,
        {
            "faults": outcome.faults,
            "skipped_faults": outcome.skipped_faults,
            "phases_s": outcome.phases_s,
            "final_incomplete": outcome.final_incomplete,
            "probe_rounds": outcome.probe_rounds,
            "probe_trace": outcome.probe_trace,
            "elapsed_s": round(time.monotonic() - started, 1),
            "run_dir": str(run_dir) if not ok or args.keep else None,
        },
    )
    text = report.render(doc)
    doc["table"] = text
    print()
    print(text, flush=True)
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0 if ok else 1
