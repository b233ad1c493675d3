"""``python -m arcyou_harness.bench``: end-to-end load benchmark of gateway + worker processes.

It starts its own system (local PostgreSQL and Redis from the dev launcher's wheels, or the
servers named by ``--database-url`` / ``--redis-url``), runs gateways and workers as separate
processes, drives them from load-generator processes (:mod:`arcyou_harness.bench.loadgen`) over
127.0.0.1, measures PostgreSQL's and Redis's own ceilings (pgbench, redis-benchmark) on the same
servers, and prints one table (also written as JSON with ``--out``). See ``docs/benchmarks.md``.
"""
