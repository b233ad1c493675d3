"""``python -m arcyou_harness.bridge``: arguments, the sections of rows, the plain-asyncio child,
the scratch database's lifetime (also on Ctrl-C and SIGTERM)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from arcyou_harness.bridge import __doc__ as PACKAGE_DOC
from arcyou_harness.bridge.db import (
    create_scratch_db,
    drop_scratch_db,
    reset_tables,
    seed_rooms,
)
from arcyou_harness.bridge.measure import CHILDREN
from arcyou_harness.bridge.report import Row, environment, loadavg, measure_rows, render
from arcyou_harness.bridge.sections import (
    db_rows,
    plain_asyncio_child,
    publish_rows,
    subscribe_rows,
)
from arcyou_harness.common.ceilings import find_pgbench, find_redis_benchmark
from arcyou_trio.store import apply_migrations


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every row, print the table; 1 if a row failed."""
    parser = argparse.ArgumentParser(
        prog="python -m arcyou_harness.bridge", description=(PACKAGE_DOC or "").split("\n", 1)[0]
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per row (5)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved slices per row (2)")
    parser.add_argument("--warmup", type=float, default=0.5, help="not counted, per slice (0.5)")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks / clients (8)")
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database to connect to for CREATE/DROP DATABASE of the scratch database",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child-plain-asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_plain_asyncio:
        plain_asyncio_child(args.child_plain_asyncio)
        return 0

    name = f"arcyou_bench_bridge_{os.getpid()}"

    def on_signal(signum: int, _frame: object) -> None:
        # Not KeyboardInterrupt: raised into trio-asyncio while psycopg's async pool is busy, it
        # leaves the run hung for good. Stop the children, drop the database, leave at once.
        for child in list(CHILDREN):
            with contextlib.suppress(Exception):
                child.kill()
                if isinstance(child, subprocess.Popen):
                    child.wait(timeout=2)
                else:
                    child.join(timeout=2)
        with contextlib.suppress(Exception):
            drop_scratch_db(args.database_url, name)
            print(f"\ninterrupted: dropped scratch database {name}", file=sys.stderr)
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    c, warm, url = args.concurrency, args.warmup, args.redis_url
    started, load_at_start = time.perf_counter(), loadavg()
    pgbench = find_pgbench(embedded_first=False)
    rb = find_redis_benchmark()
    print(f"scratch database {name}", file=sys.stderr)
    conninfo = create_scratch_db(args.database_url, name)
    rows: list[Row] = []
    try:
        apply_migrations(conninfo)
        seed_rooms(conninfo)
        env = environment(conninfo, url, pgbench, rb)

        for load in ("64 rooms", "1 room"):
            section = db_rows(conninfo, load, c, warm, pgbench)
            reset_tables(conninfo)
            measure_rows(section, args.rounds, args.seconds)
            rows += section
        for batch in (1, 100):
            section = publish_rows(url, batch, c, warm, rb)
            measure_rows(section, args.rounds, args.seconds)
            rows += section
        section = subscribe_rows(url, warm)
        measure_rows(section, args.rounds, args.seconds)
        rows += section
    finally:
        with contextlib.suppress(Exception):
            drop_scratch_db(args.database_url, name)
            print(f"dropped scratch database {name}", file=sys.stderr)

    print()
    print(
        f"bridge benchmark: concurrency {c}, {args.seconds:g} s measured per row in {args.rounds}"
        f" interleaved slice(s), {warm:g} s warm-up per slice"
    )
    for line in env:
        print(f"  {line}")
    print(
        f"  loadavg at start {load_at_start}, at end {loadavg()};"
        f" total {time.perf_counter() - started:.0f} s"
    )
    print("  +- = half the range of the slices' rates, relative to their mean")
    print()
    print(render(rows))
    return 0 if all(r.results and not r.errors for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
