"""Retry delays for failed publishes (pure): exponential from BACKOFF_BASE_MS, capped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcyou_trio.worker.backoff import backoff_ms

bases = st.integers(min_value=1, max_value=60_000)
caps = st.integers(min_value=1, max_value=3_600_000)
attempts = st.integers(min_value=1, max_value=10_000)


def test_doubles_from_the_base_until_the_cap() -> None:
    assert [backoff_ms(n, 500, 30_000) for n in range(1, 9)] == [
        500,
        1000,
        2000,
        4000,
        8000,
        16000,
        30000,
        30000,
    ]


@given(attempt=attempts, base=bases, cap=caps)
def test_never_above_the_cap_and_never_below_the_smaller_of_base_and_cap(
    attempt: int, base: int, cap: int
) -> None:
    delay = backoff_ms(attempt, base, cap)
    assert min(base, cap) <= delay <= cap


@given(attempt=attempts, base=bases, cap=caps)
def test_non_decreasing_in_the_attempt(attempt: int, base: int, cap: int) -> None:
    assert backoff_ms(attempt, base, cap) <= backoff_ms(attempt + 1, base, cap)


def test_huge_attempt_counts_stay_cheap() -> None:
    assert backoff_ms(10**9, 500, 30_000) == 30_000


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        backoff_ms(attempt, 500, 30_000)
