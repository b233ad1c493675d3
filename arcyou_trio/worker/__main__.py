"""``python -m arcyou_trio.worker``: run the outbox worker."""

import sys

from arcyou_trio.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
