"""The API's ASGI application: its routes and the OpenAPI document generated from them."""

from __future__ import annotations

from fastapi import FastAPI

HEALTH_OK = {"ok": True}


def create_app() -> FastAPI:
    """The application; ``/openapi.json`` and the interactive ``/docs`` come with it."""
    app = FastAPI(
        title="arcyou-trio API",
        version="0.1.0",
        description="Rooms, members and history of arcyou-trio (docs/api.md in the repository).",
    )

    @app.get("/health", summary="Liveness: the process serves requests")
    async def health() -> dict[str, bool]:
        return HEALTH_OK

    return app
