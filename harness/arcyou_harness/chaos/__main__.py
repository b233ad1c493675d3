"""``python -m arcyou_harness.chaos``: see :mod:`arcyou_harness.chaos.cli`."""

import sys

from arcyou_harness.chaos.cli import main

sys.exit(main())
