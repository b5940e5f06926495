"""Scheduled job: no guarantee left behind.

Every unfinished guarantee sits in the SWEEP queue (the receiver puts it there; a review decision or a
redrive puts it back; its final write takes it out). One that is still there when due has not moved for
``StuckGuaranteeAgeSeconds``: its stream record failed, was dead-lettered or never came (a claim kept
being throttled, the processor could not start, an outage outlived the record's age). The sweep sends it
back through claim -> decide -> confirm with the same conditional write an operator's redrive uses, so
the processor reads /details before any confirm, and counts it in ``StuckGuarantees`` (which alarms).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from geft.models import FollowUpQueue, GuaranteeStatus
from geft.observability import MetricUnit, logger, metrics
from geft.repository import OPERATOR_LEASE_MARGIN_MS, GuaranteeRepository

from scheduled_jobs.config import SweeperConfig, table_job_dependencies

_SWEPT_STATUSES = frozenset(
    {GuaranteeStatus.RECEIVED, GuaranteeStatus.REVIEWED, GuaranteeStatus.REDRIVE, GuaranteeStatus.DECIDING}
)


@dataclass(frozen=True)
class SweepSummary:
    stuck: int  # sent back through the decision path
    in_progress: int  # a live claim: looked at again after its lease
    cleared: int  # finished or waiting for a person: no longer the sweep's business

    def as_dict(self) -> dict[str, int]:
        return {"stuck": self.stuck, "inProgress": self.in_progress, "cleared": self.cleared}


_dependencies = table_job_dependencies(SweeperConfig.from_env)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    config, repository = _dependencies()
    summary = sweep(repository, config, now_ms=int(time.time() * 1000))
    metrics.add_metric(name="StuckGuarantees", unit=MetricUnit.Count, value=summary.stuck)  # 0 too
    return summary.as_dict()


def sweep(repository: GuaranteeRepository, config: SweeperConfig, *, now_ms: int) -> SweepSummary:
    stuck = in_progress = cleared = 0
    for ref in repository.due_follow_ups(FollowUpQueue.SWEEP, now_ms=now_ms, limit=config.batch_limit):
        current = repository.get_guarantee(ref)
        if current is None or current.status not in _SWEPT_STATUSES or current.confirm is not None:
            repository.clear_follow_up(ref, queue=FollowUpQueue.SWEEP, now_ms=now_ms, reason="not stuck")
            cleared += 1
            continue
        idle_s = (now_ms - current.updated_at_ms) // 1000
        reason = f"stuck in {current.status} for {idle_s} s; sent back by the sweep"
        if repository.mark_redrive(ref, now_ms=now_ms, reason=reason):
            stuck += 1
            logger.warning(
                "stuck guarantee sent back",
                session_id=ref.session_id,
                status=current.status.value,
                idle_s=idle_s,
            )
            continue
        # A live (or just ended) claim: someone is on it. Look again once its lease is safely over.
        due = max(current.lease_expires_at_ms + OPERATOR_LEASE_MARGIN_MS + 1, now_ms + 60_000)
        repository.reschedule_follow_up(
            ref, queue=FollowUpQueue.SWEEP, due_ms=due, now_ms=now_ms, reason="claim in progress"
        )
        in_progress += 1
    return SweepSummary(stuck=stuck, in_progress=in_progress, cleared=cleared)
