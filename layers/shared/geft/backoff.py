"""Retry timing: capped exponential backoff with full jitter, and ``Retry-After`` parsing.

Pure and stdlib-only so the policy can be tested without a clock or a network.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 2**62 seconds is far beyond any cap; clamping the exponent keeps huge attempt numbers from overflowing.
_MAX_EXPONENT = 62
_DELTA_SECONDS = re.compile(r"\d{1,10}(?:\.\d{1,6})?")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one call is retried.

    ``max_attempts`` counts every attempt, the first included. Delays are in seconds.
    """

    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not (math.isfinite(self.base_delay) and self.base_delay >= 0):
            raise ValueError("base_delay must be a finite number >= 0")
        if not (math.isfinite(self.max_delay) and self.max_delay >= 0):
            raise ValueError("max_delay must be a finite number >= 0")


def backoff_delay(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next one.

    Full jitter: a uniform draw in ``[0, min(max_delay, base_delay * 2**(attempt - 1))]``.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    draw = min(max(rand(), 0.0), 1.0)
    return draw * ceiling


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or None when absent or unreadable.

    Accepts delta-seconds (``"120"``; a fractional value is tolerated) and an HTTP-date (``"Wed, 21 Oct
    2015 07:28:00 GMT"``). A date in the past means "now" (0.0). Negative numbers and garbage give None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    return max(0.0, (when - reference).total_seconds())
