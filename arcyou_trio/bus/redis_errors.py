"""What redis-py's exceptions mean to us, and closing a redis-py client without raising.

Every Redis exception leaves the bus as :class:`~arcyou_trio.errors.BusUnavailable` (the server
cannot be reached or stopped answering: connection errors, timeouts, ``OSError``) or
:class:`~arcyou_trio.errors.BusError` (any other Redis error), with the original as its cause.
"""

from __future__ import annotations

import logging

import redis
import redis.exceptions

from arcyou_trio.errors import BusError, BusUnavailable

log = logging.getLogger(__name__)

#: Exceptions that mean Redis is unreachable (-> :class:`BusUnavailable`).
UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
#: Every exception a redis-py call may raise about Redis or its socket.
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)


def translate(exc: BaseException) -> BusError:
    """``exc`` as a :class:`BusError` (a bus error already is one), caused by ``exc``."""
    error: BusError
    if isinstance(exc, BusError):
        return exc
    if isinstance(exc, UNAVAILABLE):
        error = BusUnavailable(f"redis unavailable: {exc}")
    else:
        error = BusError(f"redis error: {exc}")
    error.__cause__ = exc
    return error


def close_client(client: redis.Redis) -> None:
    """Close ``client``'s connections; a failure is only logged (at debug)."""
    try:
        client.close()
    except REDIS_ERRORS:
        log.debug("closing a redis client failed", exc_info=True)
