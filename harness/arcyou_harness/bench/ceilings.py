"""The benchmark's ceilings on its own servers: pgbench running our send statement for the
saturation scenario's rooms, redis-benchmark PUBLISHing an event-sized payload.

The tools and the script come from :mod:`arcyou_harness.common.ceilings`; here the room and
member ids are the saturation scenario's (:class:`arcyou_harness.bench.seed.Ids`), and the
results become the report's JSON rows. PostgreSQL does the same work per transaction as for a
gateway's send, with ``-M prepared`` (psycopg prepares the statement after a few executions on a
connection too). redis-benchmark publishes to a channel nobody subscribes to.
"""

from __future__ import annotations

import json
from typing import Any

from arcyou_harness.bench.seed import Ids
from arcyou_harness.common.ceilings import (
    find_pgbench,
    find_redis_benchmark,
    parse_redis_benchmark_csv,
    redis_benchmark_command,
    run_command,
    send_script,
    tool_version,
)
from arcyou_harness.common.ceilings import run_pgbench as run_pgbench_tool
from arcyou_harness.common.stats import summarize

__all__ = [
    "CONTENT",
    "EVENT_PAYLOAD",
    "find_pgbench",
    "find_redis_benchmark",
    "pgbench_script",
    "run_pgbench",
    "run_redis_benchmark",
]

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


def pgbench_script(ids: Ids, first_room: int, rooms: int, members: int, first_user: int) -> str:
    """Our send transaction from member ``:n`` (of ``rooms`` x ``members``) to its room."""
    room = ids.room_sql(f":n / {members} + {first_room}")
    user = ids.user_sql(f":n + {first_user}")
    return send_script(room, user, 0, rooms * members - 1, CONTENT)


def run_pgbench(
    pgbench: str, conninfo: str, script: str, clients: int, seconds: float
) -> dict[str, Any]:
    """One pgbench run as a report row."""
    done = run_pgbench_tool(pgbench, conninfo, script, clients, seconds)
    return {
        "tool": f"{tool_version(pgbench)} ({pgbench})",
        "command": " ".join([*done.command[:-4], "<script>", "<db>"]).replace(pgbench, "pgbench"),
        "clients": clients,
        "tps": done.tps,
        "transactions": done.transactions,
        "failed": done.failed,
        "latency_ms": summarize(done.latencies_ms),
        "client_cpu_s": done.client_cpu_s,
    }


def run_redis_benchmark(
    tool: str, url: str, channel: str, clients: int, pipeline: int, requests: int
) -> dict[str, Any]:
    """One redis-benchmark PUBLISH run as a report row."""
    command = redis_benchmark_command(
        tool, url, channel, clients, pipeline, requests, EVENT_PAYLOAD
    )
    done = run_command(command, 180)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()[-1000:]}")
    row = parse_redis_benchmark_csv(done.stdout)
    return {
        "tool": f"{tool_version(tool)} ({tool})",
        "command": f"redis-benchmark -c {clients} -P {pipeline} -n {requests} PUBLISH <channel>"
        f" <{len(EVENT_PAYLOAD)}-byte event>",
        "clients": clients,
        "pipeline": pipeline,
        "rps": row["rps"],
        "p50_ms": row.get("p50_latency_ms"),
        "p99_ms": row.get("p99_latency_ms"),
    }
