"""``python -m arcyou_trio.api`` (and ``arcyou-trio api``): run the HTTP API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from arcyou_trio.api.server import run_api
from arcyou_trio.auth import verifier_from_settings
from arcyou_trio.config import Settings
from arcyou_trio.runner import Service, service_main


def service(settings: Settings) -> Service:
    verifier = verifier_from_settings(settings)  # a bad JWT_PUBLIC_KEY stops startup here
    return lambda stopping: run_api(settings, verifier, stopping)


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m arcyou_trio.api",
        description="Run the HTTP API (settings: the environment, docs/operations.md).",
    ).parse_args(argv)
    return service_main("api", service)


if __name__ == "__main__":
    sys.exit(main())
