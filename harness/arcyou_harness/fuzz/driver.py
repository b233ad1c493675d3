"""The fuzzing clients: connections that send random frames and check every answer, the bystander.

:class:`Fuzzer` runs one connection per fuzzing user (reopened whenever the server closes it)
and the bystander, whose own messages must come back as live events in time; :func:`run`
starts the gateway and the outbox worker in-process and drives them all until the frame budget
or the time is used up, then waits for the outbox to settle.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import attrs
import orjson
import trio
import trio_websocket

from arcyou_harness.fuzz.frames import ConnState, FrameMaker, Ids, _canonical, _size
from arcyou_harness.fuzz.report import UNAVAILABLE, Report, Rows, _note, _short, wait_settled
from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.bus import Bus
from arcyou_trio.client import open_websocket
from arcyou_trio.config import Settings
from arcyou_trio.gateway import serve_gateway
from arcyou_trio.store import Store
from arcyou_trio.worker import OutboxWorker

CLOSE_TOO_BIG = 1009
REPLY_TIMEOUT_S = 10.0
# Time for connections to finish the frame in flight after the frame budget or time is used up.
DRAIN_GRACE_S = 30.0


@attrs.define
class Budget:
    frames: int
    deadline: float  # trio clock

    def take(self, report: Report) -> bool:
        if report.frames >= self.frames:
            return False
        if trio.current_time() >= self.deadline:
            report.stopped_by_time = True
            return False
        report.frames += 1
        return True


def check_reply(obj: Any) -> str | None:
    """Why ``obj`` is not a well-formed reply, or None."""
    if not isinstance(obj, dict):
        return "not an object"
    if not isinstance(obj.get("op"), str):
        return "op is not a string"
    if not isinstance(obj.get("success"), bool):
        return "success is not a boolean"
    if not obj["success"] and not (isinstance(obj.get("error"), str) and obj["error"]):
        return "failure without an error string"
    return None


class Fuzzer:
    def __init__(
        self, url: str, ids: Ids, settings: Settings, report: Report, budget: Budget, seed: int
    ) -> None:
        self.url = url
        self.ids = ids
        self.settings = settings
        self.report = report
        self.budget = budget
        self.seed = seed
        self.done = False

    async def run_connection(self, index: int) -> None:
        user = self.ids.users[index]
        maker = FrameMaker(
            random.Random(f"{self.seed}:{index}"), self.ids, user, self.settings.max_body_bytes
        )
        while not self.done:
            self.report.connections += 1
            try:
                async with open_websocket(self.url) as ws:
                    await self._converse(ws, maker, user)
            except (OSError, trio.BrokenResourceError, trio_websocket.HandshakeError) as exc:
                _note(self.report.unexpected_closes, f"cannot connect: {exc!r}")
                await trio.sleep(0.1)

    async def _converse(
        self, ws: trio_websocket.WebSocketConnection, maker: FrameMaker, user: str
    ) -> None:
        report = self.report
        state = ConnState()
        while True:
            if not self.budget.take(report):
                self.done = True
                return
            kind, data = maker.frame(state)
            report.frames_by_kind[kind] += 1
            oversize = _size(data) > self.settings.max_body_bytes
            try:
                await ws.send_message(data)
                reply = await self._reply(ws, state, maker)
            except trio_websocket.ConnectionClosed as exc:
                code = None if exc.reason is None else int(exc.reason.code)
                reason = None if exc.reason is None else exc.reason.reason
                report.closes[f"{code} {reason or ''}".strip()] += 1
                expected = (oversize and code == CLOSE_TOO_BIG) or (
                    state.user is None and code == 1008 and reason == "authentication timeout"
                )
                if not expected:
                    _note(report.unexpected_closes, f"{code} {reason} after {kind} {_short(data)}")
                return
            except trio.TooSlowError:
                _note(report.missing_replies, f"{kind} {_short(data)}")
                return
            if oversize:
                _note(report.unexpected_closes, f"oversize {kind} frame answered: {reply}")
            self._account(reply, data, state, maker, user)

    async def _reply(
        self, ws: trio_websocket.WebSocketConnection, state: ConnState, maker: FrameMaker
    ) -> Any:
        """Read frames until the reply; check the events met on the way."""
        report = self.report
        with trio.fail_after(REPLY_TIMEOUT_S):
            while True:
                text = await ws.get_message()
                try:
                    obj = orjson.loads(text)
                except orjson.JSONDecodeError:
                    _note(report.malformed, f"not JSON: {_short(text)}")
                    continue
                if isinstance(obj, dict) and "success" in obj:
                    report.replies += 1
                    return obj
                if not (isinstance(obj, dict) and obj.get("op") == "event"):
                    _note(report.malformed, f"neither reply nor event: {_short(text)}")
                    continue
                report.events += 1
                room = obj.get("roomId")
                if room not in state.joined:
                    _note(
                        report.leaks,
                        f"event of {room} on a connection that joined {sorted(state.joined)}",
                    )
                message_id = obj.get("message", {}).get("id")
                if isinstance(room, str) and isinstance(message_id, int):
                    maker.last_ids[room] = max(maker.last_ids.get(room, 0), message_id)

    def _account(
        self, reply: Any, data: str | bytes, state: ConnState, maker: FrameMaker, user: str
    ) -> None:
        report = self.report
        problem = check_reply(reply)
        if problem is not None:
            _note(report.malformed, f"{problem}: {_short(str(reply))} for {_short(data)}")
            return
        op = reply["op"]
        if not reply["success"]:
            report.errors[reply["error"]] += 1
            if reply["error"] == UNAVAILABLE:
                report.unavailable += 1
            return
        report.successes[op] += 1
        if op == "auth":
            state.user = reply.get("userId")
            if state.user not in (user, self.ids.stranger):
                _note(report.leaks, f"auth as {state.user} with {_short(data)}")
            return
        rooms = self.ids.members.get(state.user or "", set())
        room = reply.get("room_id")
        if op == "join":
            if room not in rooms:
                _note(report.leaks, f"joined {room} as {state.user}, not a member")
            state.joined.add(str(room))
        elif op == "send":
            report.sends_ok += 1
            report.sent_ids.add(reply.get("message_id"))
            request = orjson.loads(data)
            target = _canonical(request["room_id"])
            if target not in rooms:
                _note(report.leaks, f"sent to {target} as {state.user}, not a member")
            if target is not None:
                maker.last_ids[target] = max(maker.last_ids.get(target, 0), reply["message_id"])
        elif op == "ack":
            if room not in rooms:
                _note(report.leaks, f"acked {room} as {state.user}, not a member")
            key = (str(room), str(state.user))
            mark = reply["last_read_message_id"]
            if not isinstance(mark, int) or mark < report.marks.get(key, 0):
                _note(report.malformed, f"ack mark went back: {reply}")
            else:
                report.marks[key] = mark
        else:
            _note(report.malformed, f"success of an unknown op: {reply}")

    async def bystander(self, user: str, room: str, stop: trio.Event, timeout_s: float) -> None:
        """Send, and wait for the live event of each message, until ``stop``."""
        report = self.report
        async with open_websocket(self.url) as ws:
            with trio.fail_after(REPLY_TIMEOUT_S):
                for frame in ({"op": "auth", "token": user}, {"op": "join", "room_id": room}):
                    await ws.send_message(orjson.dumps(frame).decode())
                    reply = orjson.loads(await ws.get_message())
                    if not reply.get("success"):
                        raise RuntimeError(f"bystander setup failed: {reply}")
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    await self._bystander_round(ws, room, n, timeout_s)
                except trio_websocket.ConnectionClosed as exc:
                    _note(report.bystander_missed, f"bystander connection closed: {exc.reason}")
                    return
                await trio.sleep(0.02)

    async def _bystander_round(
        self, ws: trio_websocket.WebSocketConnection, room: str, n: int, timeout_s: float
    ) -> None:
        report = self.report
        started = trio.current_time()
        frame = {"op": "send", "room_id": room, "content": {"text": f"still here {n}"}}
        await ws.send_message(orjson.dumps(frame).decode())
        report.bystander_sent += 1
        message_id: int | None = None
        # The live event may overtake the reply (docs/protocol.md: it "normally" comes after):
        # the commit wakes the worker before the send's result reaches this connection's task.
        seen_before_reply: set[int] = set()
        with trio.move_on_after(timeout_s):
            while True:
                obj = orjson.loads(await ws.get_message())
                if obj.get("op") != "event":
                    if not obj.get("success"):
                        _note(report.bystander_missed, f"send {n} failed: {obj}")
                        return
                    message_id = obj["message_id"]
                    report.sends_ok += 1
                    report.sent_ids.add(message_id)
                    if message_id in seen_before_reply:
                        report.bystander_received += 1
                        report.latencies.append(trio.current_time() - started)
                        return
                    continue
                if obj.get("roomId") != room:
                    _note(report.leaks, f"bystander got an event of {obj.get('roomId')}")
                if message_id is None:
                    seen_before_reply.add(obj["message"]["id"])
                elif obj["message"]["id"] == message_id:
                    report.bystander_received += 1
                    report.latencies.append(trio.current_time() - started)
                    return
        _note(report.bystander_missed, f"message {n} (id {message_id}) not back in {timeout_s} s")


async def run(args: argparse.Namespace, settings: Settings, ids: Ids, report: Report) -> Rows:
    async with (
        Store.open(settings, wait=True) as store,
        Bus.open(settings.redis_url) as bus,
        trio.open_nursery() as system,
    ):
        listeners = await system.start(
            serve_gateway, settings, store, bus, verifier_from_settings(settings)
        )
        port = listeners[0].socket.getsockname()[1]
        await system.start(OutboxWorker(settings, store, bus).serve)
        url = f"ws://127.0.0.1:{port}"
        budget = Budget(args.frames, trio.current_time() + args.max_seconds)
        fuzzer = Fuzzer(url, ids, settings, report, budget, args.seed)
        stop = trio.Event()
        bystander_user = next(u for u, rooms in ids.members.items() if ids.bystander_room in rooms)
        started = trio.current_time()
        async with trio.open_nursery() as outer:
            outer.start_soon(
                fuzzer.bystander, bystander_user, ids.bystander_room, stop, args.bystander_timeout
            )
            with trio.move_on_after(args.max_seconds + DRAIN_GRACE_S) as hard_stop:
                async with trio.open_nursery() as fuzzers:
                    for i in range(args.connections):
                        fuzzers.start_soon(fuzzer.run_connection, i)
            report.hard_stopped = hard_stop.cancelled_caught
            report.fuzz_seconds = trio.current_time() - started
            stop.set()
        rows = await wait_settled(settings.database_url, ids)
        system.cancel_scope.cancel()
    return rows
