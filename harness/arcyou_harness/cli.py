"""``arcyou-harness bench|chaos|fuzz|bridge [args]``: ``python -m arcyou_harness.<name> [args]``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

#: The module of each harness's ``main(argv)``.
MAINS = {
    "bench": "arcyou_harness.bench.run",
    "chaos": "arcyou_harness.chaos.cli",
    "fuzz": "arcyou_harness.fuzz.cli",
    "bridge": "arcyou_harness.bridge.run",
    "apibench": "arcyou_harness.apibench.run",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the named harness with the remaining arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in MAINS:
        print(f"usage: arcyou-harness {{{','.join(MAINS)}}} [args ...]", file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    name, rest = args[0], args[1:]
    run: Callable[[list[str]], int] = importlib.import_module(MAINS[name]).main
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
