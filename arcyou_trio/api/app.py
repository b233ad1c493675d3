"""The API's ASGI application: its routes and the OpenAPI document generated from them."""

from __future__ import annotations

from fastapi import FastAPI

from arcyou_trio.api import history, problems, rooms, schemas
from arcyou_trio.auth import Verifier
from arcyou_trio.store import Store

HEALTH_OK = {"ok": True}

PROBLEM_RESPONSES = {
    status: {
        "model": schemas.Problem,
        "content": {problems.PROBLEM_JSON: {}},
    }
    for status in (400, 401, 403, 404, 409, 413, 422, 503)
}


def create_app(store: Store, verifier: Verifier) -> FastAPI:
    """The application; ``/openapi.json`` and the interactive ``/docs`` come with it."""
    app = FastAPI(
        title="arcyou-trio API",
        version="0.1.0",
        description="Rooms, members and history of arcyou-trio (docs/api.md in the repository).",
    )
    app.state.store = store
    app.state.verifier = verifier
    problems.install(app)

    @app.get("/health", summary="Liveness: the process serves requests")
    async def health() -> dict[str, bool]:
        return HEALTH_OK

    app.include_router(rooms.router, responses=PROBLEM_RESPONSES)  # type: ignore[arg-type]
    app.include_router(history.router, responses=PROBLEM_RESPONSES)  # type: ignore[arg-type]
    app.add_middleware(problems.BodyLimit)
    return app
