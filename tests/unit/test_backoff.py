"""Backoff timing and Retry-After parsing (pure: no clock, no network)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from geft.backoff import RetryPolicy, backoff_delay, parse_retry_after
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2026, 1, 31, 14, 5, 12, tzinfo=UTC)


def constant(value: float) -> Callable[[], float]:
    return lambda: value


def test_default_policy_matches_the_documented_values() -> None:
    # GIVEN / WHEN
    policy = RetryPolicy()

    # THEN
    assert (policy.max_attempts, policy.base_delay, policy.max_delay) == (5, 0.2, 5.0)


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 3.2), (6, 5.0)]
)
def test_upper_bound_doubles_per_attempt_until_the_cap(attempt: int, expected: float) -> None:
    # GIVEN a draw at the top of the jitter range
    policy = RetryPolicy()

    # WHEN
    delay = backoff_delay(attempt, policy, rand=lambda: 1.0)

    # THEN
    assert delay == pytest.approx(expected)


def test_full_jitter_scales_the_ceiling_by_the_draw() -> None:
    # GIVEN
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)

    # WHEN
    delays = [backoff_delay(3, policy, rand=constant(value)) for value in (0.0, 0.25, 0.5)]

    # THEN the ceiling for attempt 3 is 4 s, scaled by each draw
    assert delays == pytest.approx([0.0, 1.0, 2.0])


def test_huge_attempt_numbers_stay_capped_without_overflow() -> None:
    # GIVEN
    policy = RetryPolicy()

    # WHEN
    delay = backoff_delay(10_000, policy, rand=lambda: 1.0)

    # THEN
    assert delay == 5.0


@given(attempt=st.integers(min_value=1, max_value=200), draw=st.floats(min_value=0.0, max_value=1.0))
def test_delay_always_within_zero_and_the_cap(attempt: int, draw: float) -> None:
    # GIVEN
    policy = RetryPolicy()

    # WHEN
    delay = backoff_delay(attempt, policy, rand=lambda: draw)

    # THEN
    assert 0.0 <= delay <= policy.max_delay


def test_attempt_is_one_based() -> None:
    # GIVEN / WHEN / THEN
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(0, RetryPolicy())


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1.0}, {"max_delay": float("inf")}])
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    # GIVEN / WHEN / THEN
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("1", 1.0), (" 120 ", 120.0), ("1.5", 1.5)])
def test_retry_after_delta_seconds(value: str, expected: float) -> None:
    # GIVEN / WHEN
    seconds = parse_retry_after(value, now=NOW)

    # THEN
    assert seconds == expected


def test_retry_after_http_date_in_the_future() -> None:
    # GIVEN a date 90 s after "now"
    value = "Sat, 31 Jan 2026 14:06:42 GMT"

    # WHEN
    seconds = parse_retry_after(value, now=NOW)

    # THEN
    assert seconds == pytest.approx(90.0)


def test_retry_after_http_date_in_the_past_means_now() -> None:
    # GIVEN / WHEN
    seconds = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW)

    # THEN
    assert seconds == 0.0


def test_retry_after_http_date_against_the_real_clock() -> None:
    # GIVEN a date about a minute ahead of the wall clock
    ahead = datetime.now(UTC) + timedelta(seconds=61)
    value = ahead.strftime("%a, %d %b %Y %H:%M:%S GMT")

    # WHEN
    seconds = parse_retry_after(value)

    # THEN
    assert seconds is not None
    assert 55.0 <= seconds <= 61.0


@pytest.mark.parametrize(
    "value", [None, "", "   ", "-1", "-0.5", "soon", "1e3", "nan", "inf", "12abc", "Someday, 99 Foo 2026"]
)
def test_retry_after_garbage_or_negative_is_none(value: str | None) -> None:
    # GIVEN / WHEN
    seconds = parse_retry_after(value, now=NOW)

    # THEN
    assert seconds is None
