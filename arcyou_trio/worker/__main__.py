"""``python -m arcyou_trio.worker`` (and ``arcyou-trio worker``): run the outbox worker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from arcyou_trio.config import Settings
from arcyou_trio.runner import Service, cancelled_on, service_main
from arcyou_trio.worker.loop import run_worker


def service(settings: Settings) -> Service:
    # The worker stops at once on a signal: rows it claimed go back to pending in its cleanup.
    return lambda stopping: cancelled_on(stopping, lambda: run_worker(settings))


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m arcyou_trio.worker",
        description="Run the outbox worker; configured by the environment (docs/operations.md).",
    ).parse_args(argv)
    return service_main("worker", service)


if __name__ == "__main__":
    sys.exit(main())
