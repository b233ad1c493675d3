"""Tests for ``arcyou_trio.protocol.ratelimit.TokenBucket`` driven by a fake clock.

The bucket is pure: time is just the ``now_ms`` number passed in, so every test builds its own
timeline. Covered: construction checks, the tokens-in-[0, capacity] invariant, the burst +
refill-rate bound on successful takes, refill to full after ``refill_ms`` of idleness, and clocks
that go backwards never minting tokens.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcyou_trio.protocol.ratelimit import TokenBucket

FAST = settings(max_examples=150, deadline=None, database=None)
EPS = 1e-6

capacities = st.integers(min_value=1, max_value=50)
refills = st.integers(min_value=1, max_value=20_000)
starts = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
# One step of a timeline: how long to wait (>= 0, often 0 so bursts happen) and how many takes.
forward_steps = st.lists(
    st.tuples(
        st.one_of(
            st.just(0.0),
            st.floats(min_value=0, max_value=30_000, allow_nan=False),
            st.integers(0, 50),
        ),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=40,
)
# Like forward_steps, but the clock may also jump backwards.
any_steps = st.lists(
    st.tuples(
        st.floats(min_value=-30_000, max_value=30_000, allow_nan=False),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=40,
)


def _assert_in_range(bucket: TokenBucket) -> None:
    assert 0.0 <= bucket.tokens <= bucket.capacity


# -- construction ----------------------------------------------------------------------------


def test_starts_full() -> None:
    bucket = TokenBucket(30, 10_000)
    assert bucket.tokens == 30.0
    assert bucket.updated_ms is None


@pytest.mark.parametrize(("capacity", "refill_ms"), [(0, 10), (-1, 10), (10, 0), (10, -5)])
def test_rejects_non_positive_parameters(capacity: int, refill_ms: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        TokenBucket(capacity, refill_ms)


def test_burst_then_reject_at_same_instant() -> None:
    bucket = TokenBucket(3, 1000)
    assert [bucket.try_take(5.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.tokens == 0.0


def test_refill_is_proportional() -> None:
    bucket = TokenBucket(10, 1000)
    for _ in range(10):
        assert bucket.try_take(0.0)
    assert not bucket.try_take(99.0)  # 0.99 tokens
    assert bucket.try_take(100.0)  # 1.0 token
    assert not bucket.try_take(100.0)
    assert bucket.try_take(350.0)
    assert bucket.try_take(350.0)  # 2.5 tokens gained since 100 ms
    assert not bucket.try_take(350.0)


# -- properties --------------------------------------------------------------------------------


@FAST
@given(capacity=capacities, refill_ms=refills, t0=starts, steps=any_steps)
def test_tokens_stay_between_zero_and_capacity(
    capacity: int, refill_ms: int, t0: float, steps: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(capacity, refill_ms)
    now = t0
    for delta, takes in steps:
        now += delta
        for _ in range(takes):
            bucket.try_take(now)
            _assert_in_range(bucket)


@FAST
@given(capacity=capacities, refill_ms=refills, t0=starts, steps=forward_steps)
def test_successes_bounded_by_burst_plus_rate(
    capacity: int, refill_ms: int, t0: float, steps: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(capacity, refill_ms)
    now = t0
    successes = 0
    for delta, takes in steps:
        now += delta
        for _ in range(takes):
            successes += bucket.try_take(now)
            bound = capacity + (now - t0) * capacity / refill_ms
            assert successes <= bound + EPS


@FAST
@given(capacity=capacities, refill_ms=refills, t0=starts, steps=any_steps)
def test_clock_going_backwards_never_mints_tokens(
    capacity: int, refill_ms: int, t0: float, steps: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(capacity, refill_ms)
    assert bucket.try_take(t0)
    successes = 1
    latest = t0
    now = t0
    for delta, takes in steps:
        now += delta
        seen = bucket.updated_ms
        assert seen is not None
        if now <= seen:
            # Going back (or standing still) in time must not add anything: a take then leaves
            # at most what was there, and the bucket keeps the latest time it saw.
            probe = copy.deepcopy(bucket)
            probe.try_take(now)
            assert probe.tokens <= bucket.tokens
            assert probe.updated_ms == seen
        latest = max(latest, now)
        for _ in range(takes):
            successes += bucket.try_take(now)
            # The budget is governed by the latest time ever seen, never by jumps back and forth.
            assert successes <= capacity + (latest - t0) * capacity / refill_ms + EPS


def test_backwards_jump_then_forward_again_counts_elapsed_time_once() -> None:
    bucket = TokenBucket(2, 1000)
    assert bucket.try_take(1000.0)
    assert bucket.try_take(1000.0)
    assert not bucket.try_take(0.0)  # back by a full refill period: nothing gained
    assert not bucket.try_take(1400.0)  # 0.8 tokens since t=1000, not since t=0
    assert bucket.try_take(1500.0)


@FAST
@given(
    capacity=capacities,
    refill_ms=refills,
    t0=st.integers(min_value=0, max_value=10**12),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=30_000), st.integers(0, 5)), max_size=40
    ),
)
def test_full_again_after_idle_of_refill_ms(
    capacity: int, refill_ms: int, t0: int, steps: list[tuple[int, int]]
) -> None:
    # Whole-millisecond clock: the arithmetic is exact, so "full" means exactly full.
    bucket = TokenBucket(capacity, refill_ms)
    now = t0
    for delta, takes in steps:
        now += delta
        for _ in range(takes):
            bucket.try_take(now)
    later = now + refill_ms
    assert bucket.try_take(later)
    assert bucket.tokens == capacity - 1
    assert all(bucket.try_take(later) for _ in range(capacity - 1))
    assert not bucket.try_take(later)


@pytest.mark.parametrize(
    ("capacity", "refill_ms", "t0"),
    [(30, 10_000, 515_825.96), (30, 10_000, 8_379_532.608), (1, 1, 2.6708148938251295e-12)],
)
def test_full_again_after_idle_with_fractional_clock(
    capacity: int, refill_ms: int, t0: float
) -> None:
    bucket = TokenBucket(capacity, refill_ms)
    for _ in range(capacity):
        assert bucket.try_take(t0)
    later = t0 + refill_ms
    assert [bucket.try_take(later) for _ in range(capacity)] == [True] * capacity


@pytest.mark.parametrize(("capacity", "refill_ms"), [(3, 100), (30, 10_000), (7, 1000)])
def test_a_take_every_refill_ms_over_capacity_succeeds(capacity: int, refill_ms: int) -> None:
    """At exactly the refill rate every take succeeds, float rounding notwithstanding."""
    bucket = TokenBucket(capacity, refill_ms)
    for _ in range(capacity):
        assert bucket.try_take(0.0)
    now = 0.0
    for _ in range(10 * capacity):
        now += refill_ms / capacity
        assert bucket.try_take(now)
        assert not bucket.try_take(now)
