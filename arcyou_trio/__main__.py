"""``python -m arcyou_trio``: the ``arcyou-trio`` command."""

import sys

from arcyou_trio.cli import main

if __name__ == "__main__":
    sys.exit(main())
