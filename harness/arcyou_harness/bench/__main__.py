"""``python -m arcyou_harness.bench``: see :mod:`arcyou_harness.bench.run`."""

import sys

from arcyou_harness.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
