"""Token bucket rate limiter, pure: the caller passes the current time in milliseconds.

``capacity`` tokens refill evenly over ``refill_ms`` (seed: 30 ops per 10 s), so a client may
burst up to ``capacity`` ops and then sustain ``capacity / refill_ms`` ops per millisecond.
"""

from __future__ import annotations

import math

import attrs


def _slack(now_ms: float, capacity: int, refill_ms: int) -> float:
    """Rounding slack in tokens: refill is computed in floating point from clock readings, so
    waiting exactly ``refill_ms / capacity`` (or ``refill_ms``) can leave 0.9999999 of a token.
    The error grows with the clock's magnitude (its ulp), so the slack does too."""
    return 1e-9 + 16 * math.ulp(now_ms) * capacity / refill_ms


@attrs.define
class TokenBucket:
    capacity: int
    refill_ms: int
    tokens: float = attrs.field(default=-1.0)
    updated_ms: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.capacity <= 0 or self.refill_ms <= 0:
            raise ValueError("capacity and refill_ms must be positive")
        if self.tokens < 0:
            self.tokens = float(self.capacity)

    def _refill(self, now_ms: float) -> None:
        if self.updated_ms is not None and now_ms > self.updated_ms:
            gained = (now_ms - self.updated_ms) * self.capacity / self.refill_ms
            self.tokens = min(float(self.capacity), self.tokens + gained)
            if self.capacity - self.tokens < _slack(now_ms, self.capacity, self.refill_ms):
                self.tokens = float(self.capacity)
        # A clock that goes backwards must not mint tokens; keep the later stamp.
        if self.updated_ms is None or now_ms > self.updated_ms:
            self.updated_ms = now_ms

    def try_take(self, now_ms: float) -> bool:
        """Take one token if there is one; return whether the op may proceed."""
        self._refill(now_ms)
        if self.tokens >= 1.0 - _slack(now_ms, self.capacity, self.refill_ms):
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False
