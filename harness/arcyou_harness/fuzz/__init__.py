"""Hostile-client fuzzer: ``python -m arcyou_harness.fuzz --frames 100000``.

Starts a gateway and an outbox worker in this process (on 127.0.0.1, with the rate limit
raised so that every frame is processed), then drives ``--connections`` concurrent WebSocket
connections that send random frames as fast as the gateway answers: about a fifth valid
requests (so that the state machine gets past auth and join), the rest mutated requests,
garbage text, invalid JSON, deep nesting, huge numbers, NaN/Infinity tokens, unicode edge
cases, binary frames and frames around ``MAX_BODY_BYTES``. A connection the server closes is
reopened. Meanwhile a bystander in a room of its own keeps sending messages, each of which
must come back to it as a live event within ``--bystander-timeout``.

At the end it prints what happened and exits non-zero when something went wrong:

* a crash: a log record with a traceback, or at ERROR level;
* a reply that is not a JSON object with a string ``op`` and a boolean ``success`` (and a
  non-empty ``error`` on failure), a frame that got no reply, a close the frame did not call for
  (only oversize frames may close, with 1009), ``Service temporarily unavailable``;
* an event of a room the connection did not join (a leak), a bystander event missed;
* rows written that differ from the successful ``send`` replies, outbox rows not published,
  read marks that differ from the successful ``ack`` replies.

Without ``--database-url``/``--redis-url`` it starts throwaway PostgreSQL and Redis servers
(the same as ``arcyou-trio dev``) in a temporary directory. Given URLs must point at this
machine; the fuzzer only writes to rooms it creates, and only counts rows of those rooms.

The parts: :mod:`~arcyou_harness.fuzz.frames` (the random frame generator),
:mod:`~arcyou_harness.fuzz.driver` (connections, bystander, run loop),
:mod:`~arcyou_harness.fuzz.report` (figures, row counts, verdict),
:mod:`~arcyou_harness.fuzz.cli` (arguments, throwaway servers, rooms).
"""

from arcyou_harness.fuzz.cli import create_rooms, fuzz_settings, local_servers, main
from arcyou_harness.fuzz.driver import Budget, Fuzzer, check_reply, run
from arcyou_harness.fuzz.frames import ConnState, FrameMaker, Ids, Obj, Raw, encode
from arcyou_harness.fuzz.report import (
    UNAVAILABLE,
    CapturedLogs,
    Report,
    Rows,
    count_rows,
    print_report,
    wait_settled,
)

__all__ = [
    "UNAVAILABLE",
    "Budget",
    "CapturedLogs",
    "ConnState",
    "FrameMaker",
    "Fuzzer",
    "Ids",
    "Obj",
    "Raw",
    "Report",
    "Rows",
    "check_reply",
    "count_rows",
    "create_rooms",
    "encode",
    "fuzz_settings",
    "local_servers",
    "main",
    "print_report",
    "run",
    "wait_settled",
]
