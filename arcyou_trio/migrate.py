"""``python -m arcyou_trio.migrate``: apply the schema migrations and exit."""

import sys

from arcyou_trio.cli import main

if __name__ == "__main__":
    sys.exit(main(["migrate", *sys.argv[1:]]))
