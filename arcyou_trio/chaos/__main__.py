"""``python -m arcyou_trio.chaos``: see :mod:`arcyou_trio.chaos.cli`."""

import sys

from arcyou_trio.chaos.cli import main

sys.exit(main())
