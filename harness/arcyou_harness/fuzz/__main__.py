"""``python -m arcyou_harness.fuzz``: run the hostile-client fuzzer."""

import sys

from arcyou_harness.fuzz.cli import main

if __name__ == "__main__":
    sys.exit(main())
