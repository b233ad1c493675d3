"""Serving the API on trio: hypercorn's trio worker, bound to ``HOST:API_PORT``.

``serve_api`` serves one app over an open store; ``run_api`` is the process (it opens the
store). ``serve_api`` follows trio's ``serve_*`` convention: ``started(binds)`` once listening, a
graceful stop when ``stopping`` is set (requests in flight get ``SHUTDOWN_GRACE_MS``).
"""

from __future__ import annotations

import errno
import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from arcyou_trio.api.app import create_app
from arcyou_trio.auth import Verifier, refresh_keys
from arcyou_trio.config import Settings
from arcyou_trio.errors import PortInUse
from arcyou_trio.runner import leaves
from arcyou_trio.store import Store

log = logging.getLogger(__name__)


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.api_port}"]
    config.graceful_timeout = settings.shutdown_grace_ms / 1000
    config.accesslog = None
    config.errorlog = log
    return config


async def serve_api(
    settings: Settings,
    store: Store,
    verifier: Verifier,
    stopping: trio.Event | None = None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, or until ``stopping`` is set and the requests in flight end."""
    trigger = stopping.wait if stopping is not None else None
    try:
        await serve(
            create_app(store, verifier),  # type: ignore[arg-type]  # FastAPI is an ASGI app; hypercorn's type is narrower
            hypercorn_config(settings),
            shutdown_trigger=trigger,
            task_status=task_status,
        )
    except* OSError as group:
        # hypercorn binds inside its own nursery: the error arrives in a group.
        for exc in leaves(group):
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise PortInUse(settings.host, settings.api_port, "API_PORT") from exc
        raise


async def run_api(
    settings: Settings, verifier: Verifier, stopping: trio.Event | None = None
) -> None:
    """The API process: open the store, serve until stopped."""
    if verifier.dev_mode:
        log.warning("JWT_PUBLIC_KEY=dev-placeholder: a bearer token is taken as the user id")
    async with Store.open(settings) as store, trio.open_nursery() as nursery:
        nursery.start_soon(refresh_keys, verifier, settings)
        await serve_api(settings, store, verifier, stopping)
        nursery.cancel_scope.cancel()
