"""The ``arcyou-trio`` command: ``gateway``, ``worker``, ``migrate``, ``dev`` and ``client``.

Startup problems are reported as one line on stderr, never a traceback: a bad setting exits
with code 2 naming the variable; an unreachable dependency at startup exits with code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from arcyou_trio.config import Settings
from arcyou_trio.errors import ArcyouError, ConfigError
from arcyou_trio.runner import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    cancelled_on,
    log,
    run_service,
    setup_logging,
)


def _migrate(settings: Settings) -> int:
    from arcyou_trio.store import apply_migrations

    try:
        applied = apply_migrations(settings.database_url)
    except ArcyouError as exc:
        print(f"arcyou-trio migrate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for m in applied:
        log.info("applied %04d_%s", m.version, m.name)
    if not applied:
        log.info("schema is up to date")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arcyou-trio", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("gateway", help="run the WebSocket gateway")
    sub.add_parser("worker", help="run the outbox worker")
    sub.add_parser("migrate", help="apply database migrations and exit")

    dev = sub.add_parser(
        "dev",
        help="run migrate, gateway and worker in one process (local servers if no URLs are set)",
    )
    dev.add_argument("--data-dir", type=Path, help="where local server data lives")
    dev.add_argument("--fresh", action="store_true", help="start from empty data")
    dev.add_argument("--no-sample", action="store_true", help="do not create the sample room")
    dev.add_argument("--port", type=int, help="gateway port (default: PORT or 8080)")

    client = sub.add_parser("client", help="talk to a gateway: quick test or interactive chat")
    client.add_argument("--url", default="ws://127.0.0.1:8080", help="gateway WebSocket URL")
    client.add_argument("--user", required=True, help="user id (the token in dev mode)")
    client.add_argument("--token", help="token to send (default: --user)")
    client.add_argument("--room", required=True, help="room id to join")
    client.add_argument(
        "--send", metavar="TEXT", help="send TEXT, print its live event and exit (quick test)"
    )
    client.add_argument("--timeout-s", type=float, default=10.0, help="quick-test time limit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    if args.command == "client":
        from arcyou_trio.client.cli import run_client

        return run_client(args)
    if args.command == "dev":
        from arcyou_trio.devstack.launcher import run_dev

        return run_dev(args)

    try:
        settings = Settings.from_env()
        if args.command == "gateway":
            from arcyou_trio.auth import verifier_from_settings

            verifier = verifier_from_settings(settings)
    except ConfigError as exc:
        print(f"arcyou-trio {args.command}: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.log_level, settings.log_format)
    grace_s = settings.shutdown_grace_ms / 1000

    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "gateway":
        from arcyou_trio.gateway import run_gateway

        return run_service(
            "gateway", lambda stopping: run_gateway(settings, verifier, stopping), grace_s
        )
    from arcyou_trio.worker import run_worker

    return run_service(
        "worker", lambda stopping: cancelled_on(stopping, lambda: run_worker(settings)), grace_s
    )


if __name__ == "__main__":
    sys.exit(main())
