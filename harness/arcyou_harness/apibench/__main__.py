"""``python -m arcyou_harness.apibench``."""

import sys

from arcyou_harness.apibench.run import main

sys.exit(main())
