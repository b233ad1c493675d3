"""The ``arcyou-trio`` command: services (``gateway``, ``worker``, ``api``, ``migrate``, ``dev``),
and tools (``client``, ``token``, and ``rooms``, ``members``, ``history`` on the HTTP API).

Startup problems are reported as one line on stderr, never a traceback, with exit code 2: a
bad setting (naming the variable), a port in use, a bad ``--url``, a gateway or (for
``migrate``) a database that cannot be reached. A failure after a service started exits 1.
``gateway``, ``worker`` and ``migrate`` run the same ``main`` as ``python -m
arcyou_trio.gateway`` / ``.worker`` / ``.migrate``.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path


def _token(args: argparse.Namespace) -> int:
    from arcyou_trio.tokens import TokenError, mint_token

    try:
        pem = args.key.read_bytes()
        token = mint_token(
            pem,
            args.user,
            ttl_s=args.ttl_s,
            kid=args.kid,
            issuer=args.issuer,
            audience=args.audience,
        )
    except OSError as exc:
        print(f"arcyou-trio token: cannot read --key {args.key}: {exc.strerror}", file=sys.stderr)
        return 2
    except TokenError as exc:
        print(f"arcyou-trio token: --key {args.key}: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arcyou-trio", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("gateway", help="run the WebSocket gateway")
    sub.add_parser("worker", help="run the outbox worker")
    sub.add_parser("api", help="run the HTTP API (HOST:API_PORT)")
    sub.add_parser("migrate", help="apply database migrations and exit")

    dev = sub.add_parser(
        "dev",
        help="run migrate, gateway, worker and API in one process (local servers if no URLs set)",
    )
    dev.add_argument("--data-dir", type=Path, help="where local server data lives")
    dev.add_argument("--fresh", action="store_true", help="start from empty data")
    dev.add_argument("--no-sample", action="store_true", help="do not create the sample room")
    dev.add_argument("--port", type=int, help="gateway port (default: PORT or 8080)")
    dev.add_argument("--api-port", type=int, help="HTTP API port (default: API_PORT or 8081)")
    dev.add_argument(
        "--client-command",
        default="arcyou-trio client",
        help="how the banner tells you to run the client (nox -s dev sets 'nox -s client --')",
    )

    token = sub.add_parser("token", help="sign a JWT for a user with a private key (PEM)")
    token.add_argument(
        "--key", type=Path, required=True, help="private key file (PEM, no passphrase)"
    )
    token.add_argument("--user", type=uuid.UUID, required=True, help="the user's UUID (sub)")
    token.add_argument("--ttl-s", type=int, default=3600, help="seconds until it expires")
    token.add_argument("--kid", help="key id header, to pick the key from a JWKS")
    token.add_argument("--issuer", help="iss claim (match JWT_ISSUER)")
    token.add_argument("--audience", help="aud claim (match JWT_AUDIENCE)")

    client = sub.add_parser("client", help="talk to a gateway: quick test or interactive chat")
    client.add_argument("--url", default="ws://127.0.0.1:8080", help="gateway WebSocket URL")
    client.add_argument("--user", required=True, help="user id (the token in dev mode)")
    client.add_argument("--token", help="token to send (default: --user)")
    client.add_argument("--room", required=True, help="room id to join")
    client.add_argument(
        "--send", metavar="TEXT", help="send TEXT, print its live event and exit (quick test)"
    )
    client.add_argument("--timeout-s", type=float, default=10.0, help="quick-test time limit")

    from arcyou_trio.client.api_cli import add_arguments

    add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    if args.command == "client":
        from arcyou_trio.client.cli import run_client

        return run_client(args)
    if args.command == "token":
        return _token(args)
    if args.command in ("rooms", "members", "history"):
        from arcyou_trio.client.api_cli import run_api_command

        return run_api_command(args)
    if args.command == "dev":
        from arcyou_trio.devstack.launcher import run_dev

        return run_dev(args)

    if args.command == "gateway":
        from arcyou_trio.gateway.__main__ import main as gateway_main

        return gateway_main([])
    if args.command == "api":
        from arcyou_trio.api.__main__ import main as api_main

        return api_main([])
    if args.command == "worker":
        from arcyou_trio.worker.__main__ import main as worker_main

        return worker_main([])
    from arcyou_trio.migrate import main as migrate_main

    return migrate_main([])


if __name__ == "__main__":
    sys.exit(main())
