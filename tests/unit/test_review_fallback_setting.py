"""The review fallback is read once (geft.settings.review_fallback_decision): the job that applies it
and the audit trail's notice that announces it accept the same values and refuse the same ones."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from audit_trail.config import AuditTrailConfig
from geft.errors import ConfigError
from scheduled_jobs.config import ReviewTimeoutConfig

ENVIRONMENTS = {"TABLE_NAME": "guarantees", "AUDIT_TABLE_NAME": "audit"}
READERS: dict[str, Callable[[dict[str, str]], str]] = {
    "review timeout": lambda env: ReviewTimeoutConfig.from_env(env).fallback_decision,
    "audit trail": lambda env: AuditTrailConfig.from_env(env).review_fallback_decision,
}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize(
    ("value", "expected"), [(None, "reject"), ("", "reject"), ("accept", "accept"), (" reject ", "reject")]
)
def test_both_functions_read_the_fallback_alike(
    reader: Callable[[dict[str, str]], str], value: str | None, expected: str
) -> None:
    env = dict(ENVIRONMENTS) if value is None else {**ENVIRONMENTS, "REVIEW_FALLBACK_DECISION": value}
    assert reader(env) == expected


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("value", ["approve", "ACCEPT", "review"])
def test_a_fallback_that_is_not_accept_or_reject_stops_the_function_at_start(
    reader: Callable[[dict[str, str]], str], value: str
) -> None:
    # The audit trail used to take any text: its notice could announce a fallback the job never applies.
    with pytest.raises(ConfigError, match="REVIEW_FALLBACK_DECISION must be one of"):
        reader({**ENVIRONMENTS, "REVIEW_FALLBACK_DECISION": value})
