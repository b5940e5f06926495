"""Scheduled job: learn the final status of sessions whose status webhook never came.

Flinks sends SessionSetupStatusChanged once, without retries, and never for Expired, so each
answered guarantee is queued for reconciliation; if no final status was recorded by then, this job
reads GET /api/v2/sessions/{id}/status and records Completed, Failed, Canceled or Expired.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from geft.errors import FlinksError, FlinksSessionNotFoundError, PersistenceError, SecretError
from geft.flinks_client import FlinksClient, client_for_secret
from geft.models import FollowUpQueue, GuaranteeRef
from geft.observability import MetricUnit, logger, metrics
from geft.repository import GuaranteeRepository
from geft.secrets import JsonSecret
from geft.webhook_events import FINAL_SESSION_STATUSES

from scheduled_jobs.config import ReconcilerConfig

_CALL_BUDGET_SECONDS = 20.0


@dataclass
class ReconcileSummary:
    reconciled: int = 0  # final status learnt from Flinks and recorded
    already_known: int = 0  # the status webhook had arrived
    pending: int = 0  # not final yet: looked at again later
    gave_up: int = 0
    not_found: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, outcome: str, ref: GuaranteeRef) -> None:
        if outcome.startswith("error: "):
            self.errors.append(f"{ref.session_id}: {outcome.removeprefix('error: ')}")
        elif outcome != "deferred":
            setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reconciled": self.reconciled,
            "alreadyKnown": self.already_known,
            "pending": self.pending,
            "gaveUp": self.gave_up,
            "notFound": self.not_found,
            "errors": len(self.errors),
        }


@functools.cache
def _dependencies() -> tuple[ReconcilerConfig, GuaranteeRepository, FlinksClient]:
    config = ReconcilerConfig.from_env()
    flinks = client_for_secret(
        config.flinks,
        JsonSecret(config.flinks.credentials_secret_id, max_age_seconds=config.secret_max_age_seconds),
        pool_maxsize=config.workers,
    )
    return config, GuaranteeRepository(config.table_name, retention_days=config.retention_days), flinks


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config, repository, flinks = _dependencies()
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - 2.0
    summary = reconcile(repository, flinks, config, deadline=deadline, clock=time.time)
    for name, value in (("Reconciled", summary.reconciled), ("ReconcileGaveUp", summary.gave_up)):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)  # 0 is a datum too
    return summary.as_dict()


def reconcile(
    repository: GuaranteeRepository,
    flinks: FlinksClient,
    config: ReconcilerConfig,
    *,
    deadline: float,
    clock: Any = time.time,
) -> ReconcileSummary:
    """Work through every due session until the queue is empty or the run's time is up, a few
    sessions at a time (each is mostly a wait on Flinks' /status)."""
    summary = ReconcileSummary()
    now_ms = int(clock() * 1000)
    seen: set[GuaranteeRef] = set()
    with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="reconcile") as pool:
        while time.monotonic() < deadline:
            due = [
                ref
                for ref in repository.due_follow_ups(
                    FollowUpQueue.RECONCILE, now_ms=now_ms, limit=config.batch_limit
                )
                if ref not in seen
            ]
            if not due:
                break
            seen.update(due)
            for ref, outcome in zip(
                due,
                pool.map(
                    lambda ref: _attempt(repository, flinks, config, ref, now_ms=now_ms, deadline=deadline),
                    due,
                ),
                strict=True,
            ):
                summary.count(outcome, ref)
    return summary


def _attempt(
    repository: GuaranteeRepository,
    flinks: FlinksClient,
    config: ReconcilerConfig,
    ref: GuaranteeRef,
    *,
    now_ms: int,
    deadline: float,
) -> str:
    if time.monotonic() >= deadline:
        return "deferred"
    try:
        return _reconcile_one(repository, flinks, config, ref, now_ms=now_ms, deadline=deadline)
    except (FlinksError, SecretError, PersistenceError) as error:
        # Left in the queue: the next run tries again.
        logger.warning(
            "reconciliation failed; retried next run", session_id=ref.session_id, reason=str(error)
        )
        return f"error: {error}"


def _reconcile_one(
    repository: GuaranteeRepository,
    flinks: FlinksClient,
    config: ReconcilerConfig,
    ref: GuaranteeRef,
    *,
    now_ms: int,
    deadline: float,
) -> str:
    if repository.session_status(ref.session_id) is not None:
        repository.clear_follow_up(ref, queue=FollowUpQueue.RECONCILE)
        return "already_known"
    calls = flinks.for_session(
        ref.session_id, deadline=min(deadline, time.monotonic() + _CALL_BUDGET_SECONDS)
    )
    try:
        answer = calls.status()
    except FlinksSessionNotFoundError:
        repository.clear_follow_up(ref, queue=FollowUpQueue.RECONCILE)
        logger.warning("session unknown to Flinks; not reconciled", session_id=ref.session_id)
        return "not_found"
    status, details = answer.get("status"), answer.get("statusDetails")
    if status in FINAL_SESSION_STATUSES:
        repository.record_session_status(
            ref.session_id,
            status=str(status),
            status_details=details if isinstance(details, str) else None,
            raw_body="",
            received_at_ms=now_ms,
            source="reconciliation",
        )
        repository.clear_follow_up(ref, queue=FollowUpQueue.RECONCILE)
        logger.info("session status reconciled", session_id=ref.session_id, final_status=status)
        return "reconciled"
    attempts = repository.reschedule_follow_up(
        ref, queue=FollowUpQueue.RECONCILE, due_ms=now_ms + config.retry_seconds * 1000
    )
    if attempts is not None and attempts >= config.max_attempts:
        repository.clear_follow_up(ref, queue=FollowUpQueue.RECONCILE)
        logger.warning(
            "session still not final; reconciliation gave up", session_id=ref.session_id, status=status
        )
        return "gave_up"
    return "pending"
