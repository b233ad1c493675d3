"""``python -m arcyou_harness.bench.loadgen``: one load-generator process (driven by the benchmark).

Protocol, one JSON object per line: the benchmark writes the spec on stdin; this process opens
every connection of the spec (``auth`` + ``join``, at most ``connect_concurrency`` at a time),
prints ``{"event": "ready", ...}``, waits for ``{"cmd": "go", ...}`` on stdin, sends as the spec
says between ``start`` and ``end`` (epoch seconds, this machine's clock), keeps receiving until
the room is quiet (or every connection has ``expect`` messages of ``expect_user``, or
``max_drain_s`` passed), prints ``{"event": "result", ...}`` and exits at once (no close
handshakes: the gateway sees the sockets go).

Each connection of the spec is ``[gateway url index, user id, room id, send or null, join?]``; a
connection with ``join`` false only authenticates (a sender that does not receive its own room,
so its replies never queue behind the room's events).

Sending modes, per connection that has ``send`` set:

- ``closed``: send, wait for the reply, send the next (a closed loop), until ``end``.
- ``paced``: open loop at ``rate`` messages/s from ``start + phase``; each message is stamped
  with its *scheduled* time, so a late generator shows up as latency instead of hiding it.
- ``one``: a single message at ``start``.

Every message's content is ``{"text": ..., "t": <time.time() at send>}``. A receiver computes
``time.time() - t`` for each live event of another user (same machine, same clock). Counts and
latencies inside the window ``[measure_from, end]`` are reported separately from totals. The
process also reports its own CPU time over the window: a generator near 100 % of one core
measures itself, not the gateway.
"""

from __future__ import annotations

import collections
import json
import math
import os
import resource
import sys
import time
from typing import Any

import attrs
import orjson
import trio
import trio_websocket

from arcyou_harness.common.procs import raise_nofile
from arcyou_harness.common.rawws import RawWebSocket, open_raw_websocket
from arcyou_trio.runner import tune_gc

TEXT = "benchmark message"
MAX_SAMPLES = 400_000  # latency samples kept per process (first ones win)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " | ".join(sorted({_describe(e) for e in exc.exceptions}))
    text = " ".join(str(exc).split())[:80]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@attrs.define
class Shared:
    """State of the whole process, updated by every connection."""

    spec: dict[str, Any]
    start: float = math.inf
    end: float = math.inf
    measure_from: float = math.inf
    clock_offset: float = 0.0  # trio.current_time() - time.time()
    go: trio.Event = attrs.Factory(trio.Event)
    set_up: int = 0
    connected: int = 0
    listeners: int = 0  # connected and joined
    failures: collections.Counter[str] = attrs.Factory(collections.Counter)
    all_set_up: trio.Event = attrs.Factory(trio.Event)
    # counters
    frames: int = 0
    last_frame: float = 0.0
    first_live: float = math.inf
    last_live: float = 0.0
    deliveries_total: int = 0
    deliveries_window: int = 0
    backfill: int = 0
    latencies_ms: list[float] = attrs.Factory(list)
    per_message: dict[int, list[float]] = attrs.Factory(dict)
    sends_total: int = 0
    sends_ok_total: int = 0
    sends_ok_window: int = 0
    send_errors: collections.Counter[str] = attrs.Factory(collections.Counter)
    ack_ms: list[float] = attrs.Factory(list)
    max_lag_s: float = 0.0
    closed: collections.Counter[str] = attrs.Factory(collections.Counter)
    complete: int = 0  # connections that have all `expect` messages of `expect_user`
    complete_event: trio.Event = attrs.Factory(trio.Event)

    def trio_time(self, epoch: float) -> float:
        return epoch + self.clock_offset


class Conn:
    def __init__(
        self,
        shared: Shared,
        url: str,
        user: str,
        room: str,
        send: dict[str, Any] | None,
        join: bool = True,
    ) -> None:
        self.s = shared
        self.join = join
        self.url = url
        self.user = user
        self.room = room
        self.send_spec = send
        self.pending: collections.deque[float] = collections.deque()
        self.reply = trio.Event()
        self.from_expected = 0

    # -- setup ---------------------------------------------------------------------------------

    async def run(self, limiter: trio.CapacityLimiter) -> None:
        s = self.s
        timeout = float(s.spec.get("connect_timeout_s", 60))
        acquired = False
        ready = False
        try:
            with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                await limiter.acquire()
                acquired = True
                async with open_raw_websocket(self.url) as ws:
                    await self._handshake(ws)
                    limiter.release()
                    acquired = False
                    scope.deadline = math.inf
                    ready = True
                    s.connected += 1
                    if self.join:
                        s.listeners += 1
                    self._set_up()
                    await self._serve(ws)
            if scope.cancelled_caught and not ready:
                s.failures["setup timeout"] += 1
        except Exception as exc:
            if ready:
                s.closed[_describe(exc)] += 1
            else:
                s.failures[_describe(exc)] += 1
        finally:
            if acquired:
                limiter.release()
            if not ready:
                self._set_up()

    def _set_up(self) -> None:
        s = self.s
        s.set_up += 1
        if s.set_up >= len(s.spec["conns"]):
            s.all_set_up.set()

    async def _handshake(self, ws: RawWebSocket) -> None:
        frames: list[dict[str, Any]] = [{"op": "auth", "token": self.user}]
        if self.join:
            frames.append({"op": "join", "room_id": self.room})
        for frame in frames:
            await ws.send_message(orjson.dumps(frame))
            reply = orjson.loads(await ws.get_message())
            if not reply.get("success"):
                raise RuntimeError(f"{frame['op']} refused: {reply.get('error')}")

    # -- running -------------------------------------------------------------------------------

    async def _serve(self, ws: RawWebSocket) -> None:
        async with trio.open_nursery() as nursery:
            if self.send_spec is not None:
                nursery.start_soon(self._sender, ws)
            await self._reader(ws)
            nursery.cancel_scope.cancel()

    async def _reader(self, ws: RawWebSocket) -> None:
        s = self.s
        expect = s.spec.get("expect")
        expect_user = s.spec.get("expect_user")
        per_message = s.spec.get("record") == "per_message"
        while True:
            try:
                data = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                reason = exc.reason
                code = reason.code if reason else None
                s.closed[f"closed {code} {(reason.reason if reason else '') or ''}".strip()] += 1
                return
            now = time.time()
            s.frames += 1
            s.last_frame = now
            frame = orjson.loads(data)
            op = frame.get("op")
            if op == "event":
                if frame.get("source") != "live":
                    s.backfill += 1
                    continue
                message = frame["message"]
                s.deliveries_total += 1
                if now < s.first_live:
                    s.first_live = now
                s.last_live = now
                if s.measure_from <= now <= s.end:
                    s.deliveries_window += 1
                uid = message["user_id"]
                t = message["content"].get("t")
                if isinstance(t, float | int) and uid != self.user:
                    if s.measure_from <= t <= s.end and len(s.latencies_ms) < MAX_SAMPLES:
                        s.latencies_ms.append((now - t) * 1000)
                    if per_message:
                        entry = s.per_message.get(message["id"])
                        if entry is None:
                            s.per_message[message["id"]] = [float(t), 1.0, now, now]
                        else:
                            entry[1] += 1
                            entry[2] = max(entry[2], now)
                            entry[3] = min(entry[3], now)
                if expect is not None and uid == expect_user:
                    self.from_expected += 1
                    if self.from_expected == expect:
                        s.complete += 1
                        if s.complete >= s.listeners:
                            s.complete_event.set()
            elif op == "send":
                t0 = self.pending.popleft() if self.pending else now
                if frame.get("success"):
                    s.sends_ok_total += 1
                    if s.measure_from <= now <= s.end:
                        s.sends_ok_window += 1
                        if len(s.ack_ms) < MAX_SAMPLES:
                            s.ack_ms.append((now - t0) * 1000)
                else:
                    s.send_errors[str(frame.get("error"))] += 1
                self.reply.set()
            # other replies (none expected after the join) are ignored

    async def _send(self, ws: RawWebSocket, t: float) -> None:
        frame = {"op": "send", "room_id": self.room, "content": {"text": TEXT, "t": t}}
        self.pending.append(time.time())
        self.s.sends_total += 1
        await ws.send_message(orjson.dumps(frame))

    async def _sender(self, ws: RawWebSocket) -> None:
        s = self.s
        spec = self.send_spec
        assert spec is not None
        await s.go.wait()
        mode = spec["mode"]
        await trio.sleep_until(s.trio_time(s.start + float(spec.get("phase", 0.0))))
        try:
            if mode == "one":
                await self._send(ws, time.time())
            elif mode == "closed":
                while (now := time.time()) < s.end:
                    self.reply = trio.Event()
                    await self._send(ws, now)
                    await self.reply.wait()
            elif mode == "paced":
                period = 1.0 / float(spec["rate"])
                count = spec.get("count")
                k = 0
                while (count is None or k < count) and (
                    due := s.start + float(spec.get("phase", 0.0)) + k * period
                ) < s.end:
                    await trio.sleep_until(s.trio_time(due))
                    s.max_lag_s = max(s.max_lag_s, time.time() - due)
                    await self._send(ws, due)
                    k += 1
            else:
                raise ValueError(f"unknown send mode {mode!r}")
        except trio_websocket.ConnectionClosed:
            return


async def _read_command(stdin: trio.abc.ReceiveStream, buf: bytearray) -> dict[str, Any]:
    while b"\n" not in buf:
        chunk = await stdin.receive_some(1 << 16)
        if not chunk:
            raise SystemExit("loadgen: stdin closed")
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    command: dict[str, Any] = json.loads(line)
    return command


async def _exit_on_eof(stdin: trio.abc.ReceiveStream) -> None:
    """The benchmark is gone (its end of our stdin closed): stop at once."""
    while await stdin.receive_some(1 << 16):
        pass
    os._exit(3)


async def run(spec: dict[str, Any], stdin: trio.abc.ReceiveStream, buf: bytearray) -> None:
    s = Shared(spec)
    urls: list[str] = spec["urls"]
    limiter = trio.CapacityLimiter(int(spec.get("connect_concurrency", 64)))
    t_setup = time.time()
    cpu_setup = _cpu()
    async with trio.open_nursery() as nursery:
        for url_index, user, room, send, *join in spec["conns"]:
            conn = Conn(s, urls[url_index], user, room, send, bool(join[0]) if join else True)
            nursery.start_soon(conn.run, limiter)
        if not spec["conns"]:
            s.all_set_up.set()
        await s.all_set_up.wait()
        setup_s = time.time() - t_setup
        _emit(
            {
                "event": "ready",
                "connected": s.connected,
                "failed": sum(s.failures.values()),
                "failures": dict(s.failures),
                "setup_s": setup_s,
                "setup_cpu_s": _cpu() - cpu_setup,
                "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
        go = await _read_command(stdin, buf)
        s.clock_offset = trio.current_time() - time.time()
        s.start = float(go["start"])
        s.end = float(go["end"])
        s.measure_from = float(go.get("measure_from", s.start))
        s.go.set()
        cpu_go, wall_go = _cpu(), time.time()
        nursery.start_soon(_exit_on_eof, stdin)
        await trio.sleep_until(s.trio_time(s.measure_from))
        cpu0, wall0 = _cpu(), time.time()
        await trio.sleep_until(s.trio_time(s.end))
        cpu1, wall1 = _cpu(), time.time()
        quiet_s = float(spec.get("quiet_s", 1.0))
        max_drain_s = float(spec.get("max_drain_s", 30.0))
        expect = spec.get("expect")
        while True:
            now = time.time()
            if expect is not None and s.complete >= s.listeners:
                break
            if s.last_frame > s.start and now - s.last_frame >= quiet_s:
                break
            if expect is None and s.last_frame <= s.start and now - s.end >= quiet_s:
                break
            if now - s.end >= max_drain_s:
                break
            with trio.move_on_after(0.05):
                await s.complete_event.wait()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result: dict[str, Any] = {
            "event": "result",
            "connected": s.connected,
            "failed": sum(s.failures.values()),
            "failures": dict(s.failures),
            "setup_s": setup_s,
            "frames": s.frames,
            "deliveries_total": s.deliveries_total,
            "deliveries_window": s.deliveries_window,
            "backfill": s.backfill,
            "first_live": s.first_live if s.first_live != math.inf else None,
            "last_live": s.last_live or None,
            "sends_total": s.sends_total,
            "sends_ok_total": s.sends_ok_total,
            "sends_ok_window": s.sends_ok_window,
            "send_errors": dict(s.send_errors),
            "ack_ms": [round(x, 3) for x in s.ack_ms],
            "latencies_ms": [round(x, 3) for x in s.latencies_ms],
            "per_message": {str(k): v for k, v in s.per_message.items()},
            "complete": s.complete,
            "max_lag_ms": s.max_lag_s * 1000,
            "closed": dict(s.closed),
            "cpu_window_s": cpu1 - cpu0,
            "wall_window_s": wall1 - wall0,
            # from the go signal until now (sending, receiving, draining)
            "cpu_run_s": _cpu() - cpu_go,
            "wall_run_s": time.time() - wall_go,
            "cpu_total_s": usage.ru_utime + usage.ru_stime,
            "rss_max_bytes": usage.ru_maxrss * 1024,
        }
        _emit(result)
        # Leave without closing 20,000 WebSockets one by one: the gateway sees the sockets go.
        os._exit(0)


async def amain() -> None:
    raise_nofile()
    stdin = trio.lowlevel.FdStream(os.dup(0))
    buf = bytearray()
    spec = await _read_command(stdin, buf)
    await run(spec, stdin, buf)


def main() -> None:
    tune_gc()  # the same collection settings as the services
    trio.run(amain)


if __name__ == "__main__":
    main()
