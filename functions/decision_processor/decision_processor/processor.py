"""The processor's logic: claim -> authorize -> details -> decide -> confirm -> record.

Exactly-once by construction: a guarantee is confirmed only by the invocation holding its claim
(a conditional RECEIVED -> DECIDING write with a lease), and an attempt that takes over from one
that may have reached Flinks' confirm first reads /details to learn whether it did.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from geft.errors import (
    FlinksAuthError,
    FlinksPermanentError,
    FlinksTransientError,
    GeftError,
    PersistenceError,
    SecretError,
)
from geft.flinks_client import FlinksClient, SessionCalls
from geft.models import GuaranteeOutcome, GuaranteeRef, GuaranteeStatus, StoredGuarantee
from geft.observability import logger
from geft.policy import DecisionPolicy
from geft.repository import Claim, ClaimResult, GuaranteeRepository
from geft.session_facts import already_decided, facts_from_session

RECOVERED_RULE = "recovered-from-flinks"
MANUAL_REVIEW_RULE = "manual-review"
_HELD_POLL_SECONDS = 0.25


class LeaseHeldError(GeftError):
    """Another invocation holds the guarantee's claim; the stream retries the record later."""


class RecordStatus(StrEnum):
    CONFIRMED = "confirmed"
    FAILED = "failed"  # permanent: recorded as FAILED with a reason, not retried
    REVIEW = "review"  # waiting for an operator: nothing sent to Flinks yet
    RETRY = "retry"  # transient: reported in batchItemFailures
    SKIPPED = "skipped"  # already finished, or not a guarantee


@dataclass(frozen=True)
class StreamRecord:
    sequence_number: str
    ref: GuaranteeRef | None


@dataclass(frozen=True)
class RecordResult:
    record: StreamRecord
    status: RecordStatus
    outcome: GuaranteeOutcome | None = None
    reason: str | None = None


@dataclass
class _Attempt:
    """What one attempt has done so far, so a failure mid-way is recorded truthfully."""

    confirm_attempted: bool = False
    decision: str | None = None
    rule: str | None = None
    inputs: dict[str, object] = field(default_factory=dict)
    decided_at_ms: int | None = None


class GuaranteeProcessor:
    def __init__(
        self,
        *,
        repository: GuaranteeRepository,
        flinks: FlinksClient,
        policy: DecisionPolicy,
        executor: Executor,
        finish_reserve_seconds: float = 3.0,
        review_timeout_seconds: int = 300,
        reconcile_delay_seconds: int = 900,
        on_credentials_rejected: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._repository = repository
        self._flinks = flinks
        self._policy = policy
        self._executor = executor
        self._finish_reserve = finish_reserve_seconds
        self._review_timeout_ms = review_timeout_seconds * 1000
        self._reconcile_delay_ms = reconcile_delay_seconds * 1000
        self._on_credentials_rejected = on_credentials_rejected
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep

    def process_batch(
        self, records: Sequence[StreamRecord], *, deadline: float, lease_until_ms: int
    ) -> list[RecordResult]:
        """Sessions run concurrently; records of one session run in stream order, and once one of
        them must be retried the later ones are retried too, so a session never skips ahead."""
        groups: dict[str, list[StreamRecord]] = {}
        for record in records:
            key = record.ref.session_id if record.ref else record.sequence_number
            groups.setdefault(key, []).append(record)
        futures = [
            self._executor.submit(self._process_group, group, deadline, lease_until_ms)
            for group in groups.values()
        ]
        by_sequence = {
            result.record.sequence_number: result for future in futures for result in future.result()
        }
        return [by_sequence[record.sequence_number] for record in records]

    def _process_group(
        self, group: list[StreamRecord], deadline: float, lease_until_ms: int
    ) -> list[RecordResult]:
        results: list[RecordResult] = []
        blocked = False
        for record in group:
            if blocked:
                results.append(
                    RecordResult(record, RecordStatus.RETRY, reason="an earlier record of the session")
                )
                continue
            result = self.process_record(record, deadline=deadline, lease_until_ms=lease_until_ms)
            blocked = result.status is RecordStatus.RETRY
            results.append(result)
        return results

    def process_record(self, record: StreamRecord, *, deadline: float, lease_until_ms: int) -> RecordResult:
        if record.ref is None:
            return RecordResult(record, RecordStatus.SKIPPED, reason="not a guarantee record")
        logger.thread_safe_append_keys(session_id=record.ref.session_id)
        try:
            return self._process(record, record.ref, deadline, lease_until_ms)
        finally:
            logger.thread_safe_remove_keys(["session_id"])

    def _process(
        self, record: StreamRecord, ref: GuaranteeRef, deadline: float, lease_until_ms: int
    ) -> RecordResult:
        claim_id = str(uuid.uuid4())
        try:
            claim = self._claim(ref, claim_id, deadline, lease_until_ms)
        except (LeaseHeldError, PersistenceError) as error:
            logger.warning("guarantee not claimed; will retry", reason=str(error))
            return RecordResult(record, RecordStatus.RETRY, reason=str(error))
        if claim.result is not ClaimResult.CLAIMED or claim.guarantee is None:
            logger.info("guarantee needs no work", claim=claim.result.value)
            return RecordResult(record, RecordStatus.SKIPPED, reason=claim.result.value)

        attempt = _Attempt()
        calls = self._flinks.for_session(ref.session_id, deadline=deadline - self._finish_reserve)
        try:
            outcome = self._decide_and_confirm(
                claim.guarantee, calls, attempt, claim.confirm_may_have_been_sent
            )
        except FlinksAuthError as error:
            # Our credentials, not the guarantee: Flinks may have rotated them before our secret was
            # updated (or within its cache age). Re-read the secret and let the stream retry; failing
            # the guarantee for good would let the customer's session expire over a config problem.
            if self._on_credentials_rejected is not None:
                with contextlib.suppress(SecretError):  # unreadable now: the retry reads it again
                    self._on_credentials_rejected()
            self._release(ref, claim_id, attempt)
            logger.error(
                "Flinks refused our API credentials; claim released for the retry", reason=str(error)
            )
            return RecordResult(record, RecordStatus.RETRY, reason=str(error))
        except FlinksPermanentError as error:
            outcome = self._failed(attempt, f"Flinks refused: {error}")
        except (FlinksTransientError, SecretError, PersistenceError) as error:
            self._release(ref, claim_id, attempt)
            logger.warning(
                "guarantee attempt failed transiently; claim released for the retry",
                reason=str(error),
                confirm_attempted=attempt.confirm_attempted,
            )
            return RecordResult(record, RecordStatus.RETRY, reason=str(error))
        return self._finish(record, ref, claim_id, outcome)

    def _claim(self, ref: GuaranteeRef, claim_id: str, deadline: float, lease_until_ms: int) -> Claim:
        """Claim the guarantee. While another invocation holds a live lease, poll until it finishes
        the guarantee, its lease runs out (it died holding it) or our own budget does."""
        while True:
            claim = self._repository.claim(
                ref, claim_id=claim_id, now_ms=self._now_ms(), lease_until_ms=lease_until_ms
            )
            if claim.result is not ClaimResult.HELD:
                return claim
            lease_left = (claim.lease_expires_at_ms - self._now_ms()) / 1000
            budget = deadline - self._monotonic() - self._finish_reserve
            if budget <= 0:
                raise LeaseHeldError(f"claim held by another attempt for {lease_left:.1f}s more")
            self._sleep(max(0.05, min(_HELD_POLL_SECONDS, lease_left + 0.05, budget)))

    def _decide_and_confirm(
        self, guarantee: StoredGuarantee, calls: SessionCalls, attempt: _Attempt, uncertain: bool
    ) -> GuaranteeOutcome:
        body = _webhook_body(guarantee.raw_body)
        carried = body.get("guaranteeDetails")
        carried_details = carried if isinstance(carried, dict) else None
        reviewed = guarantee.review_decision is not None
        needs_details = uncertain or (carried_details is None and not reviewed)
        details = calls.details() if needs_details else None

        if uncertain and details is not None:
            prior = already_decided(details)
            if prior is not None:
                # An earlier attempt's confirm reached Flinks before it died: record, never resend.
                return self._confirmed(guarantee, attempt, prior, recovered=True, details=details)

        if reviewed:
            # The facts the policy saw stay on the item from the review request (no inputs written
            # here); who decided and why are the review's own attributes.
            attempt.decision, attempt.rule = guarantee.review_decision, MANUAL_REVIEW_RULE
        else:
            decision = self._policy.decide(facts_from_session(details, carried_details, body))
            attempt.decision, attempt.rule, attempt.inputs = (
                decision.outcome,
                decision.rule,
                dict(decision.inputs),
            )
        attempt.decided_at_ms = self._now_ms()
        logger.info("guarantee decided", decision=attempt.decision, rule=attempt.rule)
        if attempt.decision == "review":
            return self._held_for_review(attempt)

        accepted = attempt.decision == "accept"
        attempt.confirm_attempted = True
        # A confirm whose outcome is unknown raises FlinksConfirmOutcomeUnknownError (transient): the
        # claim is released with confirm_attempted, and the retry reads /details before anything else.
        result = calls.confirm(accepted)
        return self._confirmed(
            guarantee,
            attempt,
            accepted,
            flinks_session_id=result.session_id,
            flinks_reference_id=result.reference_id,
        )

    def _held_for_review(self, attempt: _Attempt) -> GuaranteeOutcome:
        return GuaranteeOutcome(
            status=GuaranteeStatus.REVIEW,
            decision=attempt.decision,
            rule=attempt.rule,
            inputs=attempt.inputs,
            decided_at_ms=attempt.decided_at_ms,
            follow_up_due_ms=(attempt.decided_at_ms or self._now_ms()) + self._review_timeout_ms,
        )

    def _confirmed(
        self,
        guarantee: StoredGuarantee,
        attempt: _Attempt,
        accepted: bool,
        *,
        recovered: bool = False,
        details: dict[str, Any] | None = None,
        flinks_session_id: str | None = None,
        flinks_reference_id: str | None = None,
    ) -> GuaranteeOutcome:
        confirmed_at_ms = self._now_ms()
        if details is not None:  # recovered at the claim: an earlier attempt's confirm got through
            attempt.decision, attempt.rule = ("accept" if accepted else "reject"), RECOVERED_RULE
            attempt.inputs = {"guaranteeAccepted": accepted}
            flinks_session_id = _optional_str(details.get("sessionId"))
            flinks_reference_id = _optional_str(details.get("referenceId"))
        return GuaranteeOutcome(
            status=GuaranteeStatus.CONFIRMED,
            decision=attempt.decision,
            rule=attempt.rule,
            inputs=attempt.inputs,
            decided_at_ms=attempt.decided_at_ms or confirmed_at_ms,
            confirmed_at_ms=confirmed_at_ms,
            flinks_session_id=flinks_session_id,
            flinks_reference_id=flinks_reference_id,
            recovered_from_details=recovered,
            webhook_to_confirm_ms=max(0, confirmed_at_ms - guarantee.received_at_ms),
            follow_up_due_ms=confirmed_at_ms + self._reconcile_delay_ms,
        )

    def _failed(self, attempt: _Attempt, reason: str) -> GuaranteeOutcome:
        return GuaranteeOutcome(
            status=GuaranteeStatus.FAILED,
            decision=attempt.decision,
            rule=attempt.rule,
            inputs=attempt.inputs,
            decided_at_ms=attempt.decided_at_ms,
            failure_reason=reason[:500],
            follow_up_due_ms=self._now_ms() + self._reconcile_delay_ms,
        )

    def _finish(
        self, record: StreamRecord, ref: GuaranteeRef, claim_id: str, outcome: GuaranteeOutcome
    ) -> RecordResult:
        try:
            written = self._repository.finish(ref, claim_id=claim_id, outcome=outcome, now_ms=self._now_ms())
        except PersistenceError as error:
            # The confirm went out but the record did not: the retry re-claims the DECIDING item,
            # reads /details and records the outcome without confirming again.
            logger.error("outcome not recorded; the retry will recover it from Flinks", reason=str(error))
            return RecordResult(record, RecordStatus.RETRY, outcome, reason=str(error))
        if not written:
            logger.error("claim lost before the outcome was recorded", status=outcome.status.value)
        status = (
            RecordStatus.CONFIRMED if outcome.status is GuaranteeStatus.CONFIRMED else RecordStatus.FAILED
        )
        logger.info(
            "guarantee finished",
            status=outcome.status.value,
            decision=outcome.decision,
            rule=outcome.rule,
            recovered=outcome.recovered_from_details,
            webhook_to_confirm_ms=outcome.webhook_to_confirm_ms,
            failure_reason=outcome.failure_reason,
        )
        return RecordResult(record, status, outcome, reason=outcome.failure_reason)

    def _release(self, ref: GuaranteeRef, claim_id: str, attempt: _Attempt) -> None:
        try:
            self._repository.release(
                ref, claim_id=claim_id, now_ms=self._now_ms(), confirm_attempted=attempt.confirm_attempted
            )
        except PersistenceError as error:
            # The lease still expires at the invocation's deadline, so the retry can claim it then.
            logger.warning("claim not released; it expires with the lease", reason=str(error))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _webhook_body(raw_body: str) -> dict[str, Any]:
    try:
        body = json.loads(raw_body, parse_float=Decimal)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
