"""Errors as RFC 9457 problem documents, and the request-body limit.

Every error the API answers is ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail`` (422s add ``errors``: each field and its problem). The store's
refusals (:mod:`arcyou_trio.errors`) map to 404/403/409/422, an unreachable database to 503;
nothing a client sends yields a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from arcyou_trio.api.schemas import PATTERN_PROBLEMS
from arcyou_trio.errors import (
    AuthError,
    Conflict,
    NotFound,
    OutOfRange,
    RoleRequired,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: Request bodies larger than this are refused with 413 before they are read.
MAX_BODY_BYTES = 64 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": f"https://arcyou-trio.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def unauthorized(detail: str) -> JSONResponse:
    return problem(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "member_ids", 3) -> "member_ids[3]"; ("query", "limit") -> "limit"
    parts = [str(p) for p in loc[1:]] if len(loc) > 1 else [str(p) for p in loc]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() and out else (f".{part}" if out else part)
    return out or "body"


def _message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern")
        if pattern in PATTERN_PROBLEMS:
            return PATTERN_PROBLEMS[pattern]
    return str(error.get("msg", ""))


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in details):
        return problem(400, "the request body is not valid JSON")
    errors = [{"field": _field(e.get("loc", ())), "message": _message(e)} for e in details]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, summary or "invalid request", errors=errors)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, detail, headers=exc.headers)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem document."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)

    def handler(status: int) -> Callable[[Request, Exception], JSONResponse]:
        return lambda _request, exc: problem(status, str(exc))

    app.add_exception_handler(NotFound, handler(404))
    app.add_exception_handler(RoleRequired, handler(403))
    app.add_exception_handler(Conflict, handler(409))
    app.add_exception_handler(AuthError, lambda _r, exc: unauthorized(str(exc)))

    def out_of_range(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OutOfRange)
        return problem(422, str(exc), errors=[{"field": exc.field, "message": exc.problem}])

    app.add_exception_handler(OutOfRange, out_of_range)

    def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, StoreUnavailable):
            log.error("database error", exc_info=exc)
            return problem(500, "database error (logged by the server)")
        log.warning("request failed: %s", exc)
        return problem(
            503, "the database is unavailable; retry later", headers={"Retry-After": "1"}
        )

    app.add_exception_handler(StoreError, unavailable)

    def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc)
        return problem(500, "internal error (logged by the server)")

    app.add_exception_handler(Exception, internal)


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets 413 (by its Content-Length, or as
    soon as a chunked body passes the limit)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    await problem(400, "Content-Length is not a number")(scope, receive, send)
                    return
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0
        exceeded = False
        replaced = False

        async def limited() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _TooBig
            return message

        async def replacing(message: Message) -> None:
            # The app may catch _TooBig (FastAPI answers 400 for a body it could not read):
            # whatever it answers then is replaced by the 413.
            nonlocal replaced
            if exceeded:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await self._refuse(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, limited, replacing)
        except _TooBig:
            if not replaced:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, f"the request body is larger than {self.limit} bytes")
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


class _TooBig(Exception):
    pass
