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


class RoomError(ArcyouError):
    """The store refused a request about a room (the HTTP API maps these to 404/403/409/422)."""


class NotFound(RoomError):
    """No such room, member or message, or the caller is not a member of the room (a room one
    is not in answers as one that does not exist: existence is not revealed)."""


class RoleRequired(RoomError):
    """The caller is a member of the room but its role does not allow the change."""


class Conflict(RoomError):
    """The change contradicts the room's state: its last owner leaving or demoted, a closed
    room changed."""


class OutOfRange(RoomError):
    """A value names something past what exists (a read mark ahead of the room), with the
    request ``field`` it came from."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ApiError(ArcyouError):
    """The HTTP API answered a client's request with an error (its problem document's
    ``status`` and ``detail``)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class ApiUnreachable(ArcyouError):
    """The HTTP API could not be reached (wrong URL, not running)."""


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
