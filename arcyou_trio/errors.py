"""The exception hierarchy of arcyou-trio.

Every error we raise on purpose derives from :class:`ArcyouError`. Adapters (``store``,
``bus``) translate library exceptions (psycopg, redis) into these at their boundary with
``raise ... from exc`` so callers never depend on a driver's exception types.
"""

from __future__ import annotations


class ArcyouError(Exception):
    """Root of every arcyou-trio error."""


class ConfigError(ArcyouError):
    """A setting from the environment is missing or invalid.

    ``variable`` names the environment variable so that startup can print one clear line.
    """

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class AuthError(ArcyouError):
    """A token could not be verified.

    ``reason`` is a short, stable, machine-readable code (``token_expired``, ``invalid_token``,
    ...; see :mod:`arcyou_trio.auth`) that the gateway may send to the client. The message is
    for the server log and never contains the token.
    """

    def __init__(self, message: str, reason: str = "invalid_token") -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(ArcyouError):
    """Base of errors raised by the PostgreSQL adapter."""


class StoreUnavailable(StoreError):
    """PostgreSQL could not be reached or the connection broke; retrying later may work."""


class StoreTimeout(StoreUnavailable):
    """A database operation did not finish in time and was cancelled server-side."""


class MigrationError(StoreError):
    """A schema migration failed or the migration table is inconsistent."""


class BusError(ArcyouError):
    """Base of errors raised by the Redis adapter."""


class BusUnavailable(BusError):
    """Redis could not be reached or the connection broke; retrying later may work."""


class BusTimeout(BusUnavailable):
    """A Redis step did not finish in time (e.g. a subscribe Redis never confirmed)."""


class StartupError(ArcyouError):
    """A service could not start: a port in use, a server that cannot be reached at startup.

    Printed as one line with exit code 2, like :class:`ConfigError`; ``hint`` says what to do.
    """

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(f"{problem}; {hint}" if hint else problem)
        self.problem = problem
        self.hint = hint


class PortInUse(StartupError):
    """The address a listener should bind to is already taken."""

    def __init__(self, host: str, port: int, variable: str = "PORT") -> None:
        super().__init__(
            f"cannot listen on {host}:{port}: address already in use",
            f"stop what is using it or set {variable} to another port",
        )
        self.host = host
        self.port = port
        self.variable = variable
