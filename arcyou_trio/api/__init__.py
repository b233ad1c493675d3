"""The HTTP API: an ASGI application (FastAPI) served on trio by hypercorn."""

from arcyou_trio.api.app import create_app
from arcyou_trio.api.server import run_api, serve_api

__all__ = ["create_app", "run_api", "serve_api"]
