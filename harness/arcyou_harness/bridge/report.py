"""The table: rows and their slices, the summary per row, the environment header, the
interleaved measuring of a section."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as dist_version

import psycopg
import redis
import trio
import trio_asyncio

from arcyou_harness.bridge.measure import Result, percentiles


@dataclass
class Row:
    area: str
    bridge: str
    load: str
    unit: str
    run: Callable[[float], Result]  # measures one slice of the given length
    is_ceiling: bool = False
    compare: bool = True  # show a ratio to the ceiling row of the same area and load
    results: list[Result] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


@dataclass
class Summary:
    rate: float
    spread: float  # (max - min) / 2 / mean of the slices' rates
    p50_ms: float | None
    p99_ms: float | None
    cpu_us_per_op: float | None
    note: str


def summarize(results: list[Result]) -> Summary:
    rates = [r.rate for r in results]
    mean = sum(rates) / len(rates)
    spread = (max(rates) - min(rates)) / 2 / mean if mean else 0.0
    if all(r.latencies_ms is not None for r in results):
        p50, p99 = percentiles([x for r in results for x in r.latencies_ms or ()])
    else:  # tool-reported percentiles: the median of the p50s, the worst p99
        p50s = sorted(r.p50_ms for r in results if r.p50_ms is not None)
        p99s = [r.p99_ms for r in results if r.p99_ms is not None]
        p50 = p50s[len(p50s) // 2] if p50s else None
        p99 = max(p99s) if p99s else None
    cpu = [r.cpu_s for r in results if r.cpu_s is not None]
    ops = sum(r.ops for r in results if r.cpu_s is not None)
    cpu_per_op = sum(cpu) / ops * 1e6 if cpu and ops else None
    note = ", ".join(sorted({r.note for r in results if r.note}))
    return Summary(mean, spread, p50, p99, cpu_per_op, note)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def render(rows: list[Row]) -> str:
    summaries = {id(r): summarize(r.results) for r in rows if r.results}
    ceilings = {(r.area, r.load): summaries[id(r)].rate for r in rows if r.is_ceiling and r.results}
    header = ["area", "bridge", "load", "rate", "+-", "p50", "p99", "cpu/op", "vs ceiling"]
    table = [header]
    for r in rows:
        if not r.results:
            table.append([r.area, r.bridge, r.load, "FAILED", "", "", "", "", r.errors[-1][:100]])
            continue
        summary = summaries[id(r)]
        base = ceilings.get((r.area, r.load)) if r.compare else None
        ratio = f"{summary.rate / base:.2f}" if base else "-"
        if r.is_ceiling:
            ratio = "ceiling"
        notes = [summary.note] if summary.note else []
        if r.errors:
            notes.append(f"{len(r.errors)} slice(s) failed: {r.errors[-1][:60]}")
        if notes:
            ratio += f"  [{'; '.join(notes)}]"
        cpu_us = summary.cpu_us_per_op
        cpu = "-" if cpu_us is None else f"{cpu_us:.{1 if cpu_us < 10 else 0}f} us"
        table.append(
            [
                r.area,
                r.bridge,
                r.load,
                f"{summary.rate:,.0f} {r.unit}",
                f"{summary.spread:.0%}",
                fmt_ms(summary.p50_ms),
                fmt_ms(summary.p99_ms),
                cpu,
                ratio,
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {3, 4, 5, 6, 7}
    out = []
    for k, line in enumerate(table):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0 or (k + 1 < len(table) and table[k + 1][0] != line[0]):
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def environment(conninfo: str, redis_url: str, pgbench: str | None, rb: str | None) -> list[str]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "?"

    with psycopg.connect(conninfo, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
    client = redis.Redis.from_url(redis_url)
    try:
        redis_server = client.info("server").get("redis_version", "?")
    finally:
        client.close()
    try:
        hiredis = dist_version("hiredis")
    except Exception:
        hiredis = "no"
    return [
        f"python {platform.python_version()} ({platform.machine()}), trio {trio.__version__}, "
        f"trio-asyncio {trio_asyncio.__version__}",
        f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()}), "
        f"psycopg-pool {dist_version('psycopg-pool')}, redis-py {redis.__version__} "
        f"(hiredis: {hiredis})",
        f"PostgreSQL {pg_version} (synchronous_commit={sync_commit}), Redis {redis_server}",
        f"pgbench: {run(pgbench, '--version') if pgbench else 'not found'}; "
        f"redis-benchmark: {run(rb, '--version') if rb else 'not found'}",
        f"nproc {run('nproc')}",
    ]


def measure_rows(rows: list[Row], rounds: int, seconds: float) -> None:
    """Each round measures every row once, in order, for ``seconds / rounds``: interleaving
    spreads whatever else the machine is doing across the rows instead of onto one of them."""
    for k in range(rounds):
        for row in rows:
            print(f"  [{k + 1}/{rounds}] {row.area} {row.bridge} / {row.load}", file=sys.stderr)
            try:
                row.results.append(row.run(seconds / rounds))
            except Exception as exc:  # a broken bridge is a finding; keep measuring the others
                row.errors.append(" ".join(str(exc).split()) or type(exc).__name__)
                print(f"  FAILED: {row.errors[-1]}", file=sys.stderr)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
