"""``python -m arcyou_trio.bench``: see :mod:`arcyou_trio.bench.run`."""

import sys

from arcyou_trio.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
