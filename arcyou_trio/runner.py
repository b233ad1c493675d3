"""Running a trio service as a process: signals, shutdown grace, one-line fatal errors.

SIGINT and SIGTERM ask the service to stop (the gateway stops accepting and drains its
connections, the worker hands back its claimed rows) and cancel whatever still runs when the
grace period ends; cleanups are shielded and bounded, and a watchdog ends the process if they
still overrun. An :class:`~arcyou_trio.errors.ArcyouError` that
ends the service is printed as one line, no traceback: exit 2 for a startup problem (a bad
setting, a port in use: :class:`~arcyou_trio.errors.ConfigError`,
:class:`~arcyou_trio.errors.StartupError`), 1 for a failure after the service started.

:func:`service_main` is what every entry point (``python -m arcyou_trio.gateway``, ``.worker``,
the CLI's subcommands) runs: settings from the environment or one line and exit 2, logging,
then the service.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable

import trio

from arcyou_trio.config import Settings
from arcyou_trio.errors import ArcyouError, ConfigError, StartupError

log = logging.getLogger("arcyou_trio")

EXIT_CONFIG = 2  # any startup problem: configuration, a port in use, a server unreachable
EXIT_FAILURE = 1  # a failure after the service started


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


async def until_signal(main: Callable[[trio.Event], Awaitable[None]], grace_s: float) -> None:
    """Run ``main(stopping)``; on SIGINT/SIGTERM set ``stopping`` and give it ``grace_s``.

    A service that can stop gracefully watches ``stopping`` (the gateway drains its
    connections); anything still running when the grace period ends is cancelled, and a
    watchdog ends the process if even the shielded cleanups overrun.
    """
    stopping = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_main() -> None:
                try:
                    await main(stopping)
                finally:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(run_main)
            async for signum in signals:
                log.info(
                    "received %s; shutting down (grace %.1f s)",
                    signal.Signals(signum).name,
                    grace_s,
                )
                stopping.set()
                nursery.cancel_scope.deadline = trio.current_time() + grace_s
                watchdog = threading.Timer(grace_s + 5, _force_exit, args=(grace_s,))
                watchdog.daemon = True
                watchdog.start()
                break
            await trio.sleep_forever()


async def cancelled_on(stopping: trio.Event, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` until ``stopping`` is set, then cancel it (for services that stop at once)."""
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await main()
            nursery.cancel_scope.cancel()

        nursery.start_soon(run)
        await stopping.wait()
        nursery.cancel_scope.cancel()


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
        if isinstance(leaf, ConfigError | StartupError):
            code = EXIT_CONFIG
        print(f"arcyou-trio {name}: {leaf}", file=sys.stderr)
    return code


#: Cyclic-GC thresholds for the services. With Python's default (700 allocations) a gateway
#: busy fanning out spent about 30 % of its time in collections (py-spy, fan-out to 1,000
#: members); what a connection keeps lives long, and what trio allocates per step is freed by
#: reference counting, so collecting far less often costs little memory.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Freeze what start-up allocated (never collected again) and collect less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_service(name: str, main: Callable[[trio.Event], Awaitable[None]], grace_s: float) -> int:
    tune_gc()
    try:
        trio.run(until_signal, main, grace_s)
    except BaseException as exc:
        code = report(name, exc)
        if code is None:
            raise
        return code
    return 0


Service = Callable[[trio.Event], Awaitable[None]]


def configure(name: str) -> Settings | int:
    """Settings from the environment, logging set up; or the exit code after one line."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"arcyou-trio {name}: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.log_level, settings.log_format)
    return settings


def service_main(name: str, build: Callable[[Settings], Service]) -> int:
    """Configure, build the service from the settings (a ConfigError there is a startup
    problem too, e.g. a bad key) and run it until a signal."""
    settings = configure(name)
    if isinstance(settings, int):
        return settings
    try:
        service = build(settings)
    except ConfigError as exc:
        print(f"arcyou-trio {name}: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run_service(name, service, settings.shutdown_grace_ms / 1000)
