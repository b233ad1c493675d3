"""The fixtures and the hypothesis profile are in :mod:`tests.fixtures`, a plugin for the whole
run (``-p tests.fixtures`` in pyproject.toml), shared with the harness's tests (harness/tests/).
Its helpers are re-exported here for the ``from tests.conftest import ...`` of the test modules.
"""

from __future__ import annotations

from tests.fixtures import (
    System,
    _with_db,
    db,
    make_room,
    running_system,
    start_gateway,
    start_worker,
)

__all__ = [
    "System",
    "_with_db",
    "db",
    "make_room",
    "running_system",
    "start_gateway",
    "start_worker",
]
