"""The figures of a fuzz run: what the clients saw, what the database holds, and the verdict.

:class:`Report` collects the clients' counts and problems, :class:`CapturedLogs` every log
record at WARNING or above, :func:`count_rows` the rows of the fuzzer's rooms;
:func:`print_report` prints them all and decides whether the run found nothing wrong.
"""

from __future__ import annotations

import logging
import statistics
import sys
from collections import Counter
from typing import Any

import attrs
import psycopg
import trio

from arcyou_harness.fuzz.frames import Ids, _size

UNAVAILABLE = "Service temporarily unavailable"
SETTLE_TIMEOUT_S = 15.0


class CapturedLogs(logging.Handler):
    """Every WARNING-or-above record of any logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def crashes(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info or r.levelno >= logging.ERROR]

    @property
    def warnings(self) -> list[logging.LogRecord]:
        return [r for r in self.records if not (r.exc_info or r.levelno >= logging.ERROR)]


@attrs.define
class Report:
    frames: int = 0
    frames_by_kind: Counter[str] = attrs.Factory(Counter)
    replies: int = 0
    successes: Counter[str] = attrs.Factory(Counter)
    errors: Counter[str] = attrs.Factory(Counter)
    events: int = 0
    connections: int = 0
    closes: Counter[str] = attrs.Factory(Counter)  # "code reason" -> count
    unexpected_closes: list[str] = attrs.Factory(list)
    missing_replies: list[str] = attrs.Factory(list)
    malformed: list[str] = attrs.Factory(list)
    leaks: list[str] = attrs.Factory(list)
    unavailable: int = 0
    sends_ok: int = 0  # successful send replies, fuzzers and bystander
    # Distinct message ids in those replies: a send repeating a temp_id is answered with the
    # original's id and stores nothing (idempotent send), so rows = distinct ids, not replies.
    sent_ids: set[object] = attrs.Factory(set)
    marks: dict[tuple[str, str], int] = attrs.Factory(dict)  # (room, user) -> acked mark
    bystander_sent: int = 0
    bystander_received: int = 0
    bystander_missed: list[str] = attrs.Factory(list)
    latencies: list[float] = attrs.Factory(list)
    stopped_by_time: bool = False
    hard_stopped: bool = False
    fuzz_seconds: float = 0.0


def _note(bucket: list[str], text: str) -> None:
    bucket.append(text)


def _short(data: str | bytes, limit: int = 160) -> str:
    text = repr(data)
    return text if len(text) <= limit else f"{text[:limit]}...<{_size(data)} bytes>"


@attrs.frozen
class Rows:
    messages: int
    outbox: int
    unpublished: int
    dead: int
    dead_errors: list[str]
    marks: dict[tuple[str, str], int | None]


def count_rows(database_url: str, ids: Ids) -> Rows:
    rooms = [*ids.rooms, ids.bystander_room]
    with psycopg.connect(database_url, autocommit=True) as conn:

        def one(sql: str) -> Any:
            row = conn.execute(sql, (rooms,)).fetchone()
            assert row is not None
            return row[0]

        messages = one("SELECT count(*) FROM arcyou_chat_messages WHERE room_id::text = ANY(%s)")
        outbox = one("SELECT count(*) FROM outbox WHERE room_id::text = ANY(%s)")
        unpublished = one(
            "SELECT count(*) FROM outbox WHERE room_id::text = ANY(%s) AND status <> 'published'"
        )
        dead = one("SELECT count(*) FROM outbox WHERE room_id::text = ANY(%s) AND status = 'dead'")
        errors = conn.execute(
            "SELECT DISTINCT error FROM outbox WHERE room_id::text = ANY(%s) AND status = 'dead'"
            " LIMIT 5",
            (rooms,),
        ).fetchall()
        marks = {
            (str(room), str(user)): mark
            for room, user, mark in conn.execute(
                "SELECT room_id, user_id, last_read_message_id FROM arcyou_chat_members"
                " WHERE room_id::text = ANY(%s)",
                (rooms,),
            ).fetchall()
        }
    return Rows(messages, outbox, unpublished, dead, [str(e[0]) for e in errors], marks)


async def wait_settled(database_url: str, ids: Ids) -> Rows:
    deadline = trio.current_time() + SETTLE_TIMEOUT_S
    while True:
        rows = await trio.to_thread.run_sync(count_rows, database_url, ids)
        if rows.unpublished == rows.dead or trio.current_time() > deadline:
            return rows
        await trio.sleep(0.1)


def print_report(report: Report, rows: Rows, logs: CapturedLogs, wall_s: float, seed: int) -> bool:
    """Print the figures; True if the run found nothing wrong."""
    out = sys.stdout.write
    marks_expected = {key: report.marks.get(key) for key in rows.marks}
    bad_marks = {k: (v, marks_expected[k]) for k, v in rows.marks.items() if v != marks_expected[k]}
    crashes = logs.crashes
    rate = report.frames / report.fuzz_seconds if report.fuzz_seconds else 0.0
    out(f"\narcyou-trio fuzz (seed {seed}): {wall_s:.1f} s wall time in all\n")
    out(f"  fuzzing                {report.fuzz_seconds:.1f} s\n")
    out(f"  frames sent            {report.frames}  ({rate:.0f}/s)\n")
    out(f"  frames by kind         {dict(report.frames_by_kind.most_common())}\n")
    out(f"  replies received       {report.replies}\n")
    out(f"  successes by op        {dict(report.successes.most_common())}\n")
    out(f"  events received        {report.events}\n")
    out("  replies by error (top 15):\n")
    for error, n in report.errors.most_common(15):
        out(f"    {n:8d}  {error}\n")
    out(f"  connections opened     {report.connections}\n")
    out(f"  closed by the server   {dict(report.closes.most_common())}\n")
    latency = (
        f"max {max(report.latencies) * 1000:.0f} ms, median "
        f"{statistics.median(report.latencies) * 1000:.0f} ms"
        if report.latencies
        else "-"
    )
    out(
        f"  bystander              {report.bystander_sent} sent, {report.bystander_received} "
        f"events received, {len(report.bystander_missed)} missed; latency {latency}\n"
    )
    out(f"  crashes (log records with a traceback or at ERROR)  {len(crashes)}\n")
    for record in crashes[:5]:
        out(f"    {record.name}: {record.getMessage()[:300]}\n")
        if record.exc_info and record.exc_info[1] is not None:
            out(f"      {type(record.exc_info[1]).__name__}: {record.exc_info[1]}\n")
    out(f"  warnings logged        {len(logs.warnings)}\n")
    for message, n in Counter(r.getMessage()[:160] for r in logs.warnings).most_common(5):
        out(f"    {n:6d}  {message}\n")
    out(
        f"  rows written           {rows.messages} messages, {rows.outbox} outbox rows;"
        f" successful sends {report.sends_ok} ({len(report.sent_ids)} distinct message ids)\n"
    )
    unpublished = rows.unpublished - rows.dead
    out(
        f"  outbox                 {unpublished} unpublished, {rows.dead} dead {rows.dead_errors}\n"
    )
    out(f"  read marks             {len(rows.marks) - len(bad_marks)}/{len(rows.marks)} as acked\n")
    problems = {
        "unexpected closes": report.unexpected_closes,
        "missing replies": report.missing_replies,
        "malformed replies": report.malformed,
        "leaks": report.leaks,
        "bystander missed": report.bystander_missed,
        "read marks differ (db, acked)": [f"{k}: {v}" for k, v in bad_marks.items()],
    }
    for name, items in problems.items():
        out(f"  {name:22s} {len(items)}\n")
        for item in items[:5]:
            out(f"    {item}\n")
    if report.unavailable:
        out(f"  '{UNAVAILABLE}' replies: {report.unavailable}\n")
    if report.stopped_by_time:
        out("  stopped by --max-seconds before all frames were sent\n")
    if report.hard_stopped:
        out("  connections still busy after the grace period were cancelled\n")
    ok = (
        not crashes
        and not logs.warnings
        and not any(problems.values())
        and report.unavailable == 0
        and rows.messages == len(report.sent_ids)
        and rows.outbox == len(report.sent_ids)
        and rows.unpublished == 0
        and report.bystander_received == report.bystander_sent
        and not report.hard_stopped
    )
    out(f"  verdict                {'OK' if ok else 'FAILED'}\n")
    return ok
