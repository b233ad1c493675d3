"""The harness of arcyou-trio, apart from the product: it drives the product from outside.

* :mod:`arcyou_harness.bench`: end-to-end load benchmark (``docs/benchmarks.md``);
* :mod:`arcyou_harness.chaos`: kills and restarts under load, then the delivery figures
  (``docs/reliability.md``);
* :mod:`arcyou_harness.fuzz`: hostile-client fuzzer (``docs/security.md``);
* :mod:`arcyou_harness.bridge`: which bridge from trio to PostgreSQL and Redis is fastest;
* :mod:`arcyou_harness.common`: what they share (processes, the system launcher, statistics, a
  raw WebSocket client, the servers' ceilings).

Each runs as ``python -m arcyou_harness.<name>`` or ``arcyou-harness <name>``. The rule: the
harness uses only public names of :mod:`arcyou_trio`, and the product never imports the harness
(``tests/test_layout.py``).
"""
