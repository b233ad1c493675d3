"""``python -m arcyou_trio.migrate`` (and ``arcyou-trio migrate``): apply the schema
migrations and exit.

Exit 0 when the schema is up to date, 2 with one line when PostgreSQL cannot be reached (or a
setting is bad), 1 with one line when a migration itself fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from arcyou_trio.errors import ArcyouError, StoreUnavailable
from arcyou_trio.runner import EXIT_CONFIG, EXIT_FAILURE, configure, log
from arcyou_trio.store import apply_migrations


def server_address(url: str) -> str:
    """``host:port`` of a connection URL, for messages (never the user or password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 5432}"


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m arcyou_trio.migrate",
        description="Apply the database migrations and exit (DATABASE_URL; docs/operations.md).",
    ).parse_args(argv)
    settings = configure("migrate")
    if isinstance(settings, int):
        return settings
    try:
        applied = apply_migrations(settings.database_url)
    except StoreUnavailable as exc:
        print(
            f"arcyou-trio migrate: {exc} (DATABASE_URL: {server_address(settings.database_url)});"
            " start PostgreSQL or set DATABASE_URL",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except ArcyouError as exc:
        print(f"arcyou-trio migrate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for m in applied:
        log.info("applied %04d_%s", m.version, m.name)
    if not applied:
        log.info("schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
