"""The Redis adapter on a real Redis: ordering, confirmation, reconnects, cancellation, threads."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import redis
import trio

from arcyou_trio.bus import Bus, Subscriber
from arcyou_trio.errors import BusUnavailable
from tests.helpers import free_port, redis_server, wait_for

READER = "arcyou-redis-subscriber"


@pytest.fixture
def prefix() -> str:
    """A channel prefix no other test (or test run) on the same Redis uses."""
    return f"test-bus-{uuid.uuid4().hex[:10]}:"


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == READER and t.is_alive()]


def receivers(url: str, channel: str) -> int:
    """How many subscribers Redis counts on ``channel``."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
    finally:
        client.close()


def raw_publish(url: str, channel: str, data: str) -> int:
    """PUBLISH from a connection of its own; returns how many subscribers got it."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return int(client.publish(channel, data))
    finally:
        client.close()


class Collector:
    """Runs ``messages()`` in a task and keeps what it yields (or the error that ended it)."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.got: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self.ended = trio.Event()
        self._changed = trio.Event()

    async def run(self) -> None:
        try:
            async for item in self.sub.messages():
                self.got.append(item)
                self._changed.set()
                self._changed = trio.Event()
        except BusUnavailable as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 10) -> None:
        with trio.fail_after(within_s):
            while not predicate():
                if self.ended.is_set():
                    raise AssertionError(f"messages() ended early: {self.error!r}")
                await self._changed.wait()

    async def wait_count(self, n: int, within_s: float = 10) -> None:
        await self.wait_for(lambda: len(self.got) >= n, within_s)


@asynccontextmanager
async def subscribed(url: str, **kwargs: int) -> AsyncIterator[tuple[Bus, Subscriber]]:
    async with Bus.open(url, timeout_s=2) as bus, bus.subscriber(**kwargs) as sub:
        yield bus, sub
    assert reader_threads() == []


async def test_publish_many_keeps_order_and_loses_nothing(redis_url: str, prefix: str) -> None:
    channel = f"{prefix}order"
    sent = [(channel, f"m{i}") for i in range(1000)]
    async with subscribed(redis_url) as (bus, sub), trio.open_nursery() as nursery:
        collector = Collector(sub)
        nursery.start_soon(collector.run)
        await sub.subscribe(channel)
        for start in range(0, 1000, 100):  # the worker publishes in batches
            await bus.publish_many(sent[start : start + 100])
        await bus.publish_many(sent)  # and one big pipeline
        await collector.wait_count(2000)
        await trio.sleep(0.1)
        assert collector.got == sent + sent
        nursery.cancel_scope.cancel()


def command_calls(url: str) -> dict[str, int]:
    """How many times Redis has run each command (``INFO commandstats``)."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


async def test_publish_many_of_nothing_sends_nothing_and_ping_round_trips(tmp_path: Path) -> None:
    """``publish_many([])`` sends no command at all (so it succeeds even with Redis down);
    ``ping`` makes one round trip, and raises ``BusUnavailable`` once Redis is gone."""
    with redis_server(tmp_path) as server:  # our own server: nobody else's commands counted
        async with Bus.open(server.url, timeout_s=2) as bus:
            before = await trio.to_thread.run_sync(command_calls, server.url)
            await bus.publish_many([])
            await bus.ping()
            after = await trio.to_thread.run_sync(command_calls, server.url)
            assert after.get("publish", 0) == before.get("publish", 0)
            assert after.get("ping", 0) == before.get("ping", 0) + 1
            await trio.to_thread.run_sync(server.stop)
            with trio.fail_after(10):
                await bus.publish_many([])
                with pytest.raises(BusUnavailable):
                    await bus.ping()


async def test_subscribe_returns_after_redis_confirmed(redis_url: str, prefix: str) -> None:
    async with subscribed(redis_url) as (_bus, sub), trio.open_nursery() as nursery:
        collector = Collector(sub)
        nursery.start_soon(collector.run)
        for i in range(20):
            channel = f"{prefix}c{i}"
            await sub.subscribe(channel)
            # Published at once from another connection: Redis already counts us.
            assert await trio.to_thread.run_sync(raw_publish, redis_url, channel, f"d{i}") == 1
        await collector.wait_count(20)
        assert collector.got == [(f"{prefix}c{i}", f"d{i}") for i in range(20)]
        assert sub.channels == {f"{prefix}c{i}" for i in range(20)}
        nursery.cancel_scope.cancel()


async def test_subscribe_does_not_need_a_reader_running(redis_url: str, prefix: str) -> None:
    # The reader thread sees the confirmation, not messages(): nobody reads yet.
    async with subscribed(redis_url) as (_bus, sub):
        with trio.fail_after(5):
            await sub.subscribe(f"{prefix}early")
        assert await trio.to_thread.run_sync(raw_publish, redis_url, f"{prefix}early", "x") == 1


async def test_concurrent_subscribes_are_each_confirmed(redis_url: str, prefix: str) -> None:
    channels = [f"{prefix}room{i}" for i in range(50)]
    async with subscribed(redis_url) as (_bus, sub):
        async with trio.open_nursery() as nursery:
            for channel in channels:
                nursery.start_soon(sub.subscribe, channel)
        for channel in channels:
            assert await trio.to_thread.run_sync(receivers, redis_url, channel) == 1
        # Subscribing again to a confirmed channel is immediate and harmless.
        await sub.subscribe(channels[0])
        assert await trio.to_thread.run_sync(receivers, redis_url, channels[0]) == 1


async def test_unsubscribe_stops_delivery(redis_url: str, prefix: str) -> None:
    kept, dropped = f"{prefix}kept", f"{prefix}dropped"
    async with subscribed(redis_url) as (bus, sub), trio.open_nursery() as nursery:
        collector = Collector(sub)
        nursery.start_soon(collector.run)
        await sub.subscribe(kept)
        await sub.subscribe(dropped)
        await bus.publish_many([(dropped, "before"), (kept, "1")])
        await collector.wait_count(2)
        await sub.unsubscribe(dropped)
        assert sub.channels == {kept}
        # unsubscribe() returned after Redis confirmed it.
        assert await trio.to_thread.run_sync(receivers, redis_url, dropped) == 0
        await bus.publish_many([(dropped, "after"), (kept, "2")])
        await collector.wait_count(3)
        await trio.sleep(0.1)
        assert collector.got == [(dropped, "before"), (kept, "1"), (kept, "2")]
        # Unsubscribing the last channel closes the idle connection; subscribing opens one.
        await sub.unsubscribe(kept)
        await sub.unsubscribe(kept)  # twice is harmless
        await sub.subscribe(dropped)
        await bus.publish_many([(kept, "3"), (dropped, "again")])
        await collector.wait_count(4)
        assert collector.got[-1] == (dropped, "again")
        nursery.cancel_scope.cancel()


async def test_unsubscribed_messages_already_read_are_not_yielded(
    redis_url: str, prefix: str
) -> None:
    channel = f"{prefix}gone"
    async with subscribed(redis_url) as (bus, sub):
        await sub.subscribe(channel)
        await bus.publish_many([(channel, str(i)) for i in range(10)])
        # Read by the thread, not yet taken by anyone.
        await trio.sleep(0.2)
        await sub.unsubscribe(channel)
        await sub.subscribe(f"{prefix}other")
        await bus.publish_many([(f"{prefix}other", "x")])
        with trio.fail_after(5):
            async with aclosing(sub.messages()) as messages:
                assert await anext(messages) == (f"{prefix}other", "x")


async def test_messages_survives_breaking_out_mid_batch(redis_url: str, prefix: str) -> None:
    channel = f"{prefix}resume"
    async with subscribed(redis_url) as (bus, sub):
        await sub.subscribe(channel)
        await bus.publish_many([(channel, str(i)) for i in range(100)])
        got: list[str] = []
        with trio.fail_after(5):
            while len(got) < 100:
                async with aclosing(sub.messages()) as messages:
                    async for _channel, data in messages:
                        got.append(data)
                        if len(got) % 7 == 0 or len(got) == 100:
                            break
        assert got == [str(i) for i in range(100)]


async def test_reconnects_and_resubscribes_after_redis_restart(tmp_path: Path, prefix: str) -> None:
    a, b = f"{prefix}a", f"{prefix}b"
    with redis_server(tmp_path) as server:
        async with subscribed(server.url) as (bus, sub), trio.open_nursery() as nursery:
            first = Collector(sub)
            nursery.start_soon(first.run)
            await sub.subscribe(a)
            await sub.subscribe(b)
            await bus.publish_many([(a, "before")])
            await first.wait_count(1)

            await trio.to_thread.run_sync(server.stop)
            with trio.fail_after(10):
                await first.ended.wait()
            assert isinstance(first.error, BusUnavailable)
            # Still down: a new messages() call tries to reconnect and says so.
            with pytest.raises(BusUnavailable), trio.fail_after(10):
                async for _item in sub.messages():
                    pass
            assert sub.channels == {a, b}

            server.start()  # same port; from this thread (PDEATHSIG follows the starter)
            second = Collector(sub)
            nursery.start_soon(second.run)

            async def both_back() -> bool:
                counts = [await trio.to_thread.run_sync(receivers, server.url, c) for c in (a, b)]
                return counts == [1, 1]

            await wait_for(both_back, what="both channels re-subscribed")
            await bus.publish_many([(a, "after-a"), (b, "after-b")])
            await second.wait_count(2)
            assert second.got == [(a, "after-a"), (b, "after-b")]
            nursery.cancel_scope.cancel()


async def test_subscribe_reconnects_by_itself_once_redis_is_back(
    tmp_path: Path, prefix: str
) -> None:
    with redis_server(tmp_path) as server:
        async with subscribed(server.url) as (_bus, sub):
            await sub.subscribe(f"{prefix}a")
            await trio.to_thread.run_sync(server.stop)
            with pytest.raises(BusUnavailable):
                await sub.subscribe(f"{prefix}b")
            assert sub.channels == {f"{prefix}a"}  # a failed subscribe is not wanted
            server.start()  # from this thread: PDEATHSIG follows the starting thread
            # No messages() call in between: subscribe() reconnects the whole connection.
            await sub.subscribe(f"{prefix}b")
            for channel in (f"{prefix}a", f"{prefix}b"):
                assert await trio.to_thread.run_sync(receivers, server.url, channel) == 1
            # messages() first reports the gap, then carries on.
            with pytest.raises(BusUnavailable), trio.fail_after(5):
                async for _item in sub.messages():
                    pass
            assert await trio.to_thread.run_sync(raw_publish, server.url, f"{prefix}b", "x") == 1
            with trio.fail_after(5):
                async with aclosing(sub.messages()) as messages:
                    assert await anext(messages) == (f"{prefix}b", "x")


async def test_redis_down_from_the_start(prefix: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    async with subscribed(url) as (bus, sub):
        with pytest.raises(BusUnavailable):
            await sub.subscribe(f"{prefix}x")
        assert sub.channels == frozenset()
        with pytest.raises(BusUnavailable):
            await bus.publish_many([(f"{prefix}x", "y")])
        with pytest.raises(BusUnavailable):
            await bus.ping()
    assert time.monotonic() - started < 10


async def test_subscriber_closes_promptly_when_redis_is_down(tmp_path: Path, prefix: str) -> None:
    with redis_server(tmp_path) as server:
        started = None
        async with subscribed(server.url) as (_bus, sub), trio.open_nursery() as nursery:
            collector = Collector(sub)
            nursery.start_soon(collector.run)
            await sub.subscribe(f"{prefix}a")
            await trio.to_thread.run_sync(server.stop)
            with trio.fail_after(10):
                await collector.ended.wait()
            started = time.monotonic()
        assert started is not None and time.monotonic() - started < 1.0
    assert reader_threads() == []


async def test_closing_fails_waiters_and_leaves_no_thread(redis_url: str, prefix: str) -> None:
    before = reader_threads()
    async with subscribed(redis_url) as (_bus, sub), trio.open_nursery() as nursery:
        collector = Collector(sub)
        nursery.start_soon(collector.run)
        await sub.subscribe(f"{prefix}a")
        assert len(reader_threads()) == len(before) + 1
        nursery.cancel_scope.cancel()
    assert reader_threads() == before == []
    with pytest.raises(BusUnavailable):
        await sub.subscribe(f"{prefix}b")


async def test_a_slow_consumer_drops_the_subscription_and_recovers(
    redis_url: str, prefix: str
) -> None:
    channel = f"{prefix}flood"
    async with subscribed(redis_url, max_buffered=50) as (bus, sub):
        await sub.subscribe(channel)
        # Nobody takes messages: the thread reads ahead until its buffer is over the limit.
        for start in range(0, 500, 50):
            await bus.publish_many([(channel, str(i)) for i in range(start, start + 50)])

        async def dropped() -> bool:
            return await trio.to_thread.run_sync(receivers, redis_url, channel) == 0

        await wait_for(dropped, what="the subscription to be dropped")
        got: list[str] = []
        with pytest.raises(BusUnavailable, match="fell behind"), trio.fail_after(5):
            async for _channel, data in sub.messages():
                got.append(data)
        # What was read before the drop is delivered, in order, before the error.
        assert len(got) >= 50
        assert got == [str(i) for i in range(len(got))]

        collector = Collector(sub)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.run)  # reconnects and re-subscribes

            async def back() -> bool:
                return await trio.to_thread.run_sync(receivers, redis_url, channel) == 1

            await wait_for(back, what="the subscription to come back")
            await bus.publish_many([(channel, "later")])
            await collector.wait_count(1)
            assert collector.got == [(channel, "later")]
            nursery.cancel_scope.cancel()


async def _silent_server(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Accepts TCP connections and never answers anything."""

    async def never_answer(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(never_answer, listeners)


async def test_cancelled_publish_returns_promptly(prefix: str) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_silent_server)
        started = time.monotonic()
        async with Bus.open(f"redis://127.0.0.1:{port}/0", timeout_s=30) as bus:
            with trio.move_on_after(0.3) as scope:
                await bus.publish_many([(f"{prefix}x", "never answered")])
            assert scope.cancelled_caught
            assert time.monotonic() - started < 1.5
            with trio.move_on_after(0.3) as scope:
                await bus.ping()
            assert scope.cancelled_caught
        # Closing shuts the stuck sockets: no waiting for the 30 s socket timeout.
        assert time.monotonic() - started < 3
        nursery.cancel_scope.cancel()


async def test_a_message_split_across_reads_is_not_lost(redis_url: str, prefix: str) -> None:
    """redis-py's get_message(timeout=0) on half a message raises TimeoutError, and its default
    retry then silently reconnects, losing the message. The subscriber must not do that."""
    upstream_port = int(redis.connection.parse_url(redis_url).get("port", 6379))
    connections = 0

    async def slow_proxy(client: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        server = await trio.open_tcp_stream("127.0.0.1", upstream_port)
        async with client, server, trio.open_nursery() as nursery:

            async def up() -> None:
                while data := await client.receive_some():
                    await server.send_all(data)
                nursery.cancel_scope.cancel()

            async def down() -> None:
                while data := await server.receive_some():
                    if len(data) > 200:  # a big reply arrives in two parts
                        await client.send_all(data[: len(data) // 2])
                        await trio.sleep(0.3)
                        data = data[len(data) // 2 :]
                    await client.send_all(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(up)
            nursery.start_soon(down)

    channel = f"{prefix}split"
    payload = "p" * 5000
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, slow_proxy, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with subscribed(f"redis://127.0.0.1:{port}/0") as (_bus, sub):
            await sub.subscribe(channel)
            assert await trio.to_thread.run_sync(raw_publish, redis_url, channel, payload) == 1
            with trio.fail_after(5):
                async with aclosing(sub.messages()) as messages:
                    assert await anext(messages) == (channel, payload)
            assert connections == 1  # no silent reconnect
        nursery.cancel_scope.cancel()
