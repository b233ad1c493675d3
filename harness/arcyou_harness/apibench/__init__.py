"""The HTTP API benchmark: history pages, room lists and search over 1M messages."""
