"""Scheduled job: a review nobody answered in time falls back to the configured decision.

It writes the same REVIEW -> REVIEWED transition an operator's decision writes, so the stream path
confirms it exactly like a human decision: no guarantee waits until Flinks expires the session. Only
reviews the policy asked for: a guarantee held because its recovery was uncertain waits for a person.
"""

from __future__ import annotations

import time
from typing import Any

from geft.models import FollowUpQueue, Verdict
from geft.observability import MetricUnit, logger, metrics
from geft.repository import GuaranteeRepository

from scheduled_jobs.config import ReviewTimeoutConfig, table_job_dependencies

_dependencies = table_job_dependencies(ReviewTimeoutConfig.from_env)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    config, repository = _dependencies()
    return apply_fallbacks(repository, config, now_ms=int(time.time() * 1000))


def apply_fallbacks(
    repository: GuaranteeRepository, config: ReviewTimeoutConfig, *, now_ms: int
) -> dict[str, int]:
    decided = 0
    verdict = Verdict(config.fallback_decision)
    for ref in repository.due_follow_ups(FollowUpQueue.REVIEW, now_ms=now_ms):
        reason = f"no review within {config.review_timeout_seconds} s; fallback decision"
        if repository.record_review_decision(
            ref, verdict=verdict, reason=reason, now_ms=now_ms, only_from=FollowUpQueue.REVIEW
        ):
            decided += 1
            logger.warning(
                "review timed out; fallback decision applied",
                session_id=ref.session_id,
                decision=verdict.value,
            )
    metrics.add_metric(name="ReviewTimedOut", unit=MetricUnit.Count, value=decided)  # 0 is a datum too
    waiting, oldest_age_s = review_queue(repository, config, now_ms=now_ms)
    metrics.add_metric(name="ReviewQueueDepth", unit=MetricUnit.Count, value=waiting)
    metrics.add_metric(name="OldestReviewAgeSeconds", unit=MetricUnit.Seconds, value=oldest_age_s)
    return {
        "fallbackDecisions": decided,
        "waitingForAPerson": waiting,
        "oldestReviewAgeSeconds": oldest_age_s,
    }


def review_queue(
    repository: GuaranteeRepository, config: ReviewTimeoutConfig, *, now_ms: int
) -> tuple[int, int]:
    """How many guarantees wait for a person (policy reviews and holds), and how long the oldest has."""
    reviews, earliest_deadline = repository.queue_depth(FollowUpQueue.REVIEW)
    holds, earliest_hold = repository.queue_depth(FollowUpQueue.HOLD)
    since = [
        moment
        for moment in (
            earliest_deadline - config.review_timeout_seconds * 1000
            if earliest_deadline is not None
            else None,
            earliest_hold,  # a hold's due time is when it was held
        )
        if moment is not None
    ]
    oldest_age_s = max(0, (now_ms - min(since)) // 1000) if since else 0
    return reviews + holds, oldest_age_s
