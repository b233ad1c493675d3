"""Running a trio service as a process: signals, shutdown grace, one-line fatal errors.

SIGINT and SIGTERM cancel the service at once; its cleanups (closing sockets, handing back
claimed outbox rows, closing pools) are shielded and bounded, and a watchdog ends the process if
they still take longer than the grace period. An :class:`~arcyou_trio.errors.ArcyouError` that
ends the service is printed as one line (exit 2 for configuration, 1 otherwise), no traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable

import trio

from arcyou_trio.errors import ArcyouError, ConfigError

log = logging.getLogger("arcyou_trio")

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


async def until_signal(main: Callable[[], Awaitable[None]], grace_s: float) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_main() -> None:
                try:
                    await main()
                finally:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(run_main)
            async for signum in signals:
                log.info(
                    "received %s; shutting down (grace %.1f s)",
                    signal.Signals(signum).name,
                    grace_s,
                )
                watchdog = threading.Timer(grace_s, _force_exit, args=(grace_s,))
                watchdog.daemon = True
                watchdog.start()
                nursery.cancel_scope.cancel()
                break


def _force_exit(grace_s: float) -> None:
    print(f"arcyou-trio: shutdown took longer than {grace_s:.1f} s; exiting", file=sys.stderr)
    os._exit(EXIT_FAILURE)


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def report(name: str, exc: BaseException) -> int | None:
    """Print ArcyouErrors as one line each and return the exit code; None if not ours."""
    errors = leaves(exc)
    if not all(isinstance(leaf, ArcyouError) for leaf in errors):
        return None
    code = EXIT_FAILURE
    for leaf in errors:
        if isinstance(leaf, ConfigError):
            code = EXIT_CONFIG
        print(f"arcyou-trio {name}: {leaf}", file=sys.stderr)
    return code


def run_service(name: str, main: Callable[[], Awaitable[None]], grace_s: float) -> int:
    try:
        trio.run(until_signal, main, grace_s)
    except BaseException as exc:
        code = report(name, exc)
        if code is None:
            raise
        return code
    return 0
