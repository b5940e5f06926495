"""Scheduled job: learn the final status of sessions whose status webhook never came.

Flinks sends SessionSetupStatusChanged once, without retries, and never for Expired, so each
answered guarantee is queued for reconciliation; if no final status was recorded by then, this job
reads GET /api/v2/sessions/{id}/status and records Completed, Failed, Canceled or Expired.

A session whose status cannot be read (Flinks down, 400/403/410, our secret) is put off with
exponential backoff and counts toward ReconcileMaxAttempts like a status that is not final yet: no
failing session can hold the head of the queue.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from geft.aws import AwsClients
from geft.errors import FlinksError, FlinksSessionNotFoundError, PersistenceError, SecretError
from geft.flinks_client import FlinksClient, client_for_secret
from geft.flinks_metrics import FlinksCallMetrics
from geft.models import FollowUpQueue, GuaranteeRef
from geft.observability import MetricUnit, logger, metrics
from geft.repository import DYNAMODB_CLIENT_CONFIG, GuaranteeRepository
from geft.secrets import JsonSecret
from geft.session_facts import reported_status

from scheduled_jobs.config import ReconcilerConfig

_CALL_BUDGET_SECONDS = 20.0
_MAX_BACKOFF_FACTOR = 16


class Reconciliation(StrEnum):
    """What one attempt at a session's final status found."""

    RECONCILED = "reconciled"  # the final status learnt from Flinks and recorded
    ALREADY_KNOWN = "already_known"  # the status webhook had arrived
    PENDING = "pending"  # not final yet: looked at again later
    ERROR = "error"  # could not be read: looked at again later, with backoff
    GAVE_UP = "gave_up"  # ReconcileMaxAttempts reached
    NOT_FOUND = "not_found"
    DEFERRED = "deferred"  # the run's time was up before it was tried


@dataclass
class ReconcileSummary:
    counts: dict[Reconciliation, int] = field(default_factory=lambda: dict.fromkeys(Reconciliation, 0))
    errors: list[str] = field(default_factory=list)

    def count(self, result: Reconciliation, ref: GuaranteeRef, error: str | None) -> None:
        self.counts[result] += 1
        if error is not None:
            self.errors.append(f"{ref.session_id}: {error}")

    def as_dict(self) -> dict[str, int]:
        return {
            "reconciled": self.counts[Reconciliation.RECONCILED],
            "alreadyKnown": self.counts[Reconciliation.ALREADY_KNOWN],
            "pending": self.counts[Reconciliation.PENDING],
            "gaveUp": self.counts[Reconciliation.GAVE_UP],
            "notFound": self.counts[Reconciliation.NOT_FOUND],
            "errors": self.counts[Reconciliation.ERROR],
        }


# Every Flinks call of this container, written out by the handler's thread after each run.
_FLINKS_CALLS = FlinksCallMetrics()


@functools.cache
def _dependencies() -> tuple[ReconcilerConfig, GuaranteeRepository, FlinksClient]:
    config = ReconcilerConfig.from_env()
    aws = AwsClients({"dynamodb": DYNAMODB_CLIENT_CONFIG})
    flinks = client_for_secret(
        config.flinks,
        JsonSecret(
            config.flinks.credentials_secret_id, max_age_seconds=config.secret_max_age_seconds, client=aws
        ),
        pool_maxsize=config.workers,
        on_call=_FLINKS_CALLS.observe,
    )
    repository = GuaranteeRepository.for_function(config.table, client=aws)
    return config, repository, flinks


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config, repository, flinks = _dependencies()
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - 2.0
    try:
        summary = reconcile(repository, flinks, config, deadline=deadline, clock=time.time)
    finally:
        _FLINKS_CALLS.flush()
    counted = {
        "Reconciled": Reconciliation.RECONCILED,
        "ReconcileGaveUp": Reconciliation.GAVE_UP,
        "ReconcileErrors": Reconciliation.ERROR,
    }
    for name, result in counted.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=summary.counts[result])  # 0 is a datum too
    return summary.as_dict()


def reconcile(
    repository: GuaranteeRepository,
    flinks: FlinksClient,
    config: ReconcilerConfig,
    *,
    deadline: float,
    clock: Callable[[], float] = time.time,
) -> ReconcileSummary:
    """Work through every due session until the queue is empty or the run's time is up, a few
    sessions at a time (each is mostly a wait on Flinks' /status)."""
    summary = ReconcileSummary()
    now_ms = int(clock() * 1000)
    run = _Run(repository, flinks, config, now_ms=now_ms, deadline=deadline)
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
            attempts = pool.map(run.attempt, due)
            for ref, (result, error) in zip(due, attempts, strict=True):
                summary.count(result, ref, error)
    return summary


@dataclass(frozen=True)
class _Run:
    """One run's reconciliation of a due session: what every step of it works with."""

    repository: GuaranteeRepository
    flinks: FlinksClient
    config: ReconcilerConfig
    now_ms: int
    deadline: float

    def attempt(self, ref: GuaranteeRef) -> tuple[Reconciliation, str | None]:
        if time.monotonic() >= self.deadline:
            return Reconciliation.DEFERRED, None
        try:
            return self._reconcile_one(ref), None
        except (FlinksError, SecretError) as error:
            logger.warning("reconciliation failed; put off", session_id=ref.session_id, reason=str(error))
            return self._put_off(ref, f"status unreadable: {error}", error=True), str(error)
        except PersistenceError as error:
            # The table itself failed: nothing can be written now; the next run finds it still due.
            logger.warning("reconciliation not recorded", session_id=ref.session_id, reason=str(error))
            return Reconciliation.ERROR, str(error)

    def _reconcile_one(self, ref: GuaranteeRef) -> Reconciliation:
        if self.repository.session_status(ref.session_id) is not None:
            self._done(ref, "final status already recorded")
            return Reconciliation.ALREADY_KNOWN
        calls = self.flinks.for_session(
            ref.session_id, deadline=min(self.deadline, time.monotonic() + _CALL_BUDGET_SECONDS)
        )
        try:
            answer = calls.status()
        except FlinksSessionNotFoundError:
            self._done(ref, "Flinks does not know the session")
            logger.warning("session unknown to Flinks; not reconciled", session_id=ref.session_id)
            return Reconciliation.NOT_FOUND
        reported = reported_status(answer)
        status = reported.status
        if reported.final and status is not None:
            self.repository.record_session_status(
                ref.session_id,
                status=status,
                status_details=reported.status_details,
                raw_body="",
                received_at_ms=self.now_ms,
                source="reconciliation",
            )
            self._done(ref, f"final status {status} recorded")
            logger.info("session status reconciled", session_id=ref.session_id, final_status=status)
            return Reconciliation.RECONCILED
        return self._put_off(ref, f"status {status} is not final", error=False)

    def _put_off(self, ref: GuaranteeRef, reason: str, *, error: bool) -> Reconciliation:
        """Look again later (errors back off exponentially); give up after ReconcileMaxAttempts."""
        current = self.repository.get_guarantee(ref)
        done = current.follow_up_attempts if current is not None else 0
        factor = min(2**done, _MAX_BACKOFF_FACTOR) if error else 1
        attempts = self.repository.reschedule_follow_up(
            ref,
            queue=FollowUpQueue.RECONCILE,
            due_ms=self.now_ms + self.config.retry_seconds * 1000 * factor,
            now_ms=self.now_ms,
            reason=reason,
        )
        if attempts is not None and attempts >= self.config.max_attempts:
            self._done(ref, f"gave up after {attempts} attempts")
            logger.warning("reconciliation gave up", session_id=ref.session_id, reason=reason)
            return Reconciliation.GAVE_UP
        return Reconciliation.ERROR if error else Reconciliation.PENDING

    def _done(self, ref: GuaranteeRef, reason: str) -> None:
        """The session needs no more reconciling: out of the queue, saying why."""
        self.repository.clear_follow_up(ref, queue=FollowUpQueue.RECONCILE, now_ms=self.now_ms, reason=reason)
