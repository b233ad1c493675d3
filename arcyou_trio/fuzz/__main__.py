"""``python -m arcyou_trio.fuzz``: run the hostile-client fuzzer."""

import sys

from arcyou_trio.fuzz.cli import main

if __name__ == "__main__":
    sys.exit(main())
