"""Retry delays for outbox rows whose publish failed: pure, no I/O, no clock.

Exponential: the n-th failed attempt waits ``base_ms * 2**(n-1)``, never more than ``cap_ms``.
"""

from __future__ import annotations


def backoff_ms(attempt: int, base_ms: int, cap_ms: int) -> int:
    """Delay before retrying after failed attempt number ``attempt`` (1-based)."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    # Bound the exponent so huge attempt counts cannot build enormous integers.
    exponent = min(attempt - 1, 62)
    return min(cap_ms, base_ms * (1 << exponent))
