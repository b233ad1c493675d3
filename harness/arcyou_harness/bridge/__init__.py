"""Which bridge from trio to PostgreSQL and to Redis is fastest, on this machine, on our code paths.

Run: ``python -m arcyou_harness.bridge [--seconds 5] [--concurrency 8] [--database-url URL]``
(also ``--rounds 2``, ``--warmup 0.5``, ``--redis-url redis://127.0.0.1:6379/0``). The database
URL names a database to connect to for ``CREATE``/``DROP DATABASE`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). About two minutes with the defaults.

What it measures
----------------
Every row is measured for ``--seconds`` in total, split into ``--rounds`` slices; a round
measures every row of a section once, in order, so whatever else the machine is doing is spread
over the rows rather than landing on one of them. Each slice starts its client afresh and
discards ``--warmup`` seconds before counting.

Database: our send transaction for one message (what a gateway runs under light load): one
transaction of :data:`arcyou_trio.store.send.LOCK_ROOMS` (locks the room row) and
:data:`arcyou_trio.store.send.SEND` (one CTE statement that inserts the message and its outbox row
and moves the room's ``last_message_id`` and ``last_seq``), with the parameters of
:func:`arcyou_trio.store.send.send_params`, in a closed loop by ``--concurrency`` tasks, against a
scratch database (``arcyou_bench_bridge_<pid>``, created and migrated here, dropped at the end,
also on an error, Ctrl-C or SIGTERM). Two loads: ``64 rooms`` (each send picks one of 64 rooms at
random, each room with one member, so concurrent sends rarely wait on each other's room lock) and
``1 room`` (every task sends to the same room: the lock-contention worst case). Rows:

- ``store``: our :class:`arcyou_trio.store.Store` (sync ``psycopg_pool.ConnectionPool`` on
  ``trio.to_thread.run_sync`` with a ``CapacityLimiter``), calling ``store.send_messages``.
- ``aio_as_trio per call``: psycopg ``AsyncConnectionPool`` (same sizes and connection options
  as the store's pool) on a trio-asyncio loop, each send wrapped by ``trio_asyncio.aio_as_trio``
  from a trio task: what a trio-asyncio store would do.
- ``whole loop in asyncio``: the same pool, but each task's entire closed loop runs as asyncio
  code under trio-asyncio (one bridge crossing per task, not per send): what the asyncio side
  costs on trio-asyncio's loop without the per-call crossing.
- ``plain asyncio``: the same asyncio code in a child process on a stock asyncio loop, no trio
  at all (a reference, not an option for us).
- ``pgbench``: the ceiling, the same statement from C (``-M prepared``, as psycopg prepares a
  statement after 5 executions on a connection), ``-c concurrency -j 2 -n -T`` (slice rounded
  up to whole seconds). Rooms are created with ids derived from their number, and the script
  computes room and user ids from a pgbench variable in SQL, so the server does the same work.

Before each load the message and outbox tables are truncated and vacuumed and a CHECKPOINT is
taken. After every slice the messages and outbox rows written are checked against the sends
completed (a mismatch is flagged in the table). ``synchronous_commit`` is left at the server's
setting (shown in the header).

Redis: publishing a ~260-byte outbox payload per message with ``--concurrency`` tasks, in
batches of 1 and of 100 per pipelined round trip: ``Bus.publish_many`` (our bus: a sync
pipeline on a trio thread under its limiter), a bare sync ``redis.Redis`` pipeline on
``trio.to_thread.run_sync``, and the same pipeline with redis.asyncio on plain asyncio in a child
process (reference). Ceiling:
``redis-benchmark -c concurrency -P 1|100 PUBLISH channel payload`` (7.0 has no built-in publish
test, so the command is spelled out). Nobody subscribes to the publish channel.

Subscribing: messages/s received while a separate process floods one channel (raw RESP over a
socket, kept at most 10,000 delivered messages ahead of the receiver's count, so Redis never
buffers more than a few MB for the subscriber): our ``Subscriber.messages()`` (its reader
thread); a sync ``PubSub.get_message`` loop in a worker thread handing each message to a trio memory
channel through ``trio.from_thread.run_sync(send_nowait)``; and that thread handing over, in one
call, everything it can read without waiting (``per read batch``).

How to read the table
---------------------
``rate``: operations (transactions or messages) completed per second inside the measurement
windows, the mean of the slices; ``+-``: half the range of the slices' rates relative to that
mean (a noise gauge). ``p50``/``p99``: latency per call over all slices (per transaction; per
pipeline for Redis publish, so a batch of 100 is one call; redis-benchmark reports its own
percentiles, the table shows the median p50 and the worst p99 of its slices). ``cpu/op``: the
client process's CPU time (user + system) per operation over whole slices, warm-up included: the
bridge's own cost. A Python client is bound to about one core by the GIL, so its ceiling is
roughly 1 s / cpu-per-op; on a small machine every client microsecond is also one the server does
not get. ``vs ceiling``: rate divided by pgbench's (same load) or redis-benchmark's (same
pipelining). Client and servers share the machine: compare rows of one run, and run it twice to
see how much the figures move (the load average at start and end is printed).

Modules: :mod:`.measure` (slices, closed loops, ids), :mod:`.db` (the PostgreSQL rows),
:mod:`.pubsub` (the Redis rows), :mod:`.report` (the table), :mod:`.run` (arguments, sections,
the plain-asyncio child process).

Note: ``trio_asyncio`` is imported here, before anything imports psycopg, on purpose: it patches
``asyncio.get_running_loop``, and ``psycopg.waiting`` binds that name at import time; imported
the other way round, psycopg's async connect fails under trio-asyncio with "no running event
loop". Every module of this package is imported after this one.
"""

import trio_asyncio  # noqa: F401 - must come before psycopg (see above)
