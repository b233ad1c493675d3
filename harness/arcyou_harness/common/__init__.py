"""What the harnesses share: :mod:`.procs` (process limits, CPU and memory from /proc),
:mod:`.system` (starting PostgreSQL, Redis, gateways and workers as processes), :mod:`.stats`
(percentiles), :mod:`.rawws` (a minimal WebSocket client), :mod:`.ceilings` (pgbench running our
send statement, redis-benchmark)."""
