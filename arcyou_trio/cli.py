"""The ``arcyou-trio`` command: ``gateway``, ``worker`` and ``migrate``.

Startup problems are reported as one line on stderr, never a traceback: a bad setting exits
with code 2 naming the variable; an unreachable dependency at startup exits with code 1.
SIGINT and SIGTERM stop a service by cancelling it, within ``SHUTDOWN_GRACE_MS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence

import trio

from arcyou_trio.config import Settings
from arcyou_trio.errors import ArcyouError, ConfigError

log = logging.getLogger("arcyou_trio")

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


async def _until_signal(main: Callable[[], Awaitable[None]], grace_s: float) -> None:
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
                # Cancel at once. The cleanups on the way out (closing sockets, handing back
                # claimed outbox rows, closing pools) are shielded and bounded, and a watchdog
                # ends the process if they still take longer than the grace period.
                watchdog = threading.Timer(grace_s, _force_exit, args=(grace_s,))
                watchdog.daemon = True
                watchdog.start()
                nursery.cancel_scope.cancel()
                break


def _force_exit(grace_s: float) -> None:
    print(f"arcyou-trio: shutdown took longer than {grace_s:.1f} s; exiting", file=sys.stderr)
    os._exit(EXIT_FAILURE)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _run_service(name: str, settings: Settings, main: Callable[[], Awaitable[None]]) -> int:
    try:
        trio.run(_until_signal, main, settings.shutdown_grace_ms / 1000)
    except BaseException as exc:
        leaves = _leaves(exc)
        if all(isinstance(leaf, ArcyouError) for leaf in leaves):
            for leaf in leaves:
                code = EXIT_CONFIG if isinstance(leaf, ConfigError) else EXIT_FAILURE
                print(f"arcyou-trio {name}: {leaf}", file=sys.stderr)
            return code
        raise
    return 0


def _migrate(settings: Settings) -> int:
    from arcyou_trio.store import apply_migrations

    try:
        applied = apply_migrations(settings.database_url)
    except ArcyouError as exc:
        print(f"arcyou-trio migrate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if applied:
        for m in applied:
            log.info("applied %04d_%s", m.version, m.name)
    else:
        log.info("schema is up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arcyou-trio", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("gateway", help="run the WebSocket gateway")
    sub.add_parser("worker", help="run the outbox worker")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        if args.command == "gateway":
            from arcyou_trio.auth import verifier_from_settings

            verifier = verifier_from_settings(settings)
    except ConfigError as exc:
        print(f"arcyou-trio {args.command}: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _setup_logging(settings.log_level)

    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "gateway":
        from arcyou_trio.gateway import run_gateway

        return _run_service("gateway", settings, lambda: run_gateway(settings, verifier))
    from arcyou_trio.worker import run_worker

    return _run_service("worker", settings, lambda: run_worker(settings))


if __name__ == "__main__":
    sys.exit(main())
