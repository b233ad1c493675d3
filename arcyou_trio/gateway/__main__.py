"""``python -m arcyou_trio.gateway`` (and ``arcyou-trio gateway``): run the WebSocket gateway."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.config import Settings
from arcyou_trio.gateway.server import run_gateway
from arcyou_trio.runner import Service, service_main


def service(settings: Settings) -> Service:
    verifier = verifier_from_settings(settings)  # a bad JWT_PUBLIC_KEY stops startup here
    return lambda stopping: run_gateway(settings, verifier, stopping)


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m arcyou_trio.gateway",
        description="Run the WebSocket gateway (settings: the environment, docs/operations.md).",
    ).parse_args(argv)
    return service_main("gateway", service)


if __name__ == "__main__":
    sys.exit(main())
