"""Chaos harness: kill and restart every part of a running system under load, then prove that
nothing was lost, stored twice, or delivered out of order.

``python -m arcyou_harness.chaos`` (or ``nox -s chaos``) starts its own PostgreSQL and Redis, two
gateway and two worker processes, and a few dozen clients that send with the retry discipline of
a real client (same ``temp_id`` until acked; reconnect, re-auth and resume-join after any error).
Faults on a schedule and at random points: kill -9 a worker or a gateway, restart Redis,
restart PostgreSQL (fast and immediate shutdown), stop reading a client's socket. At the end
every client resumes once more, and the records are checked against the database.

Modules: :mod:`~arcyou_harness.chaos.cli` (arguments, profiles, exit code), :mod:`.run` (the
phases), :mod:`.stack` (servers and processes), :mod:`.client` / :mod:`.wire` (the simulated
clients), :mod:`.probe` (recovery measurement), :mod:`.faults`, :mod:`.model` (what is
recorded), :mod:`.check` (the figures, pure) and :mod:`.report`. See docs/reliability.md.
"""
