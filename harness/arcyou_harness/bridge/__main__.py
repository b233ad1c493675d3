"""``python -m arcyou_harness.bridge``: see :mod:`arcyou_harness.bridge.run`."""

import sys

from arcyou_harness.bridge.run import main

if __name__ == "__main__":
    sys.exit(main())
