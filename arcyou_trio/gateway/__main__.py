"""``python -m arcyou_trio.gateway``: run the WebSocket gateway."""

import sys

from arcyou_trio.cli import main

if __name__ == "__main__":
    sys.exit(main(["gateway", *sys.argv[1:]]))
