"""The processor's state machine: claim -> details -> decide -> confirm -> record.

Exactly-once by construction: a guarantee is confirmed only by the invocation holding its claim (a
conditional write with a lease). A confirm whose outcome is unknown is never re-sent in the same attempt:
the claim is released, and the next attempt looks at /details only once Flinks has had time to apply it.
Whether Flinks already records a decision is decided per guarantee (geft.session_facts.decision_at_flinks);
when it cannot be told with certainty, the guarantee waits in REVIEW for a person.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from geft.errors import (
    FlinksAuthError,
    FlinksConfirmOutcomeUnknownError,
    FlinksConflictError,
    FlinksPermanentError,
    FlinksTransientError,
    GeftError,
    PersistenceError,
    SecretError,
)
from geft.items import GuaranteeView
from geft.models import (
    Actor,
    ChangeKind,
    Decision,
    FollowUp,
    FollowUpQueue,
    GuaranteeOutcome,
    GuaranteeRef,
    GuaranteeStatus,
    Verdict,
)
from geft.observability import logger
from geft.policy import DecisionPolicy
from geft.ports import Claim, ClaimResult, FlinksSession, FlinksSessions, GuaranteeStore, Release
from geft.session_facts import (
    DecisionAtFlinks,
    GuaranteeIdentity,
    RecordedDecision,
    decision_at_flinks,
    facts_from_session,
)

RECOVERED_RULE = "recovered-from-flinks"
MANUAL_REVIEW_RULE = "manual-review"
REVIEW_TIMEOUT_RULE = "review-timeout"
_HELD_POLL_SECONDS = 0.25


class LeaseHeldError(GeftError):
    """Another invocation holds the guarantee's claim (or its confirm is settling); retried later."""


class Disposition(StrEnum):
    """What became of one stream record; the handler's metrics are named after it."""

    CONFIRMED = "confirmed"  # Flinks holds the decision (sent now, or learnt from /details)
    FAILED = "failed"  # permanent: recorded FAILED with a reason, not retried
    REVIEW = "review"  # waiting for a person: nothing sent to Flinks
    RETRY = "retry"  # transient: reported in batchItemFailures
    SKIPPED = "skipped"  # nothing to do: already finished, waiting for review, or not a guarantee
    REFUSED = "refused"  # not terminal, yet it records a confirm: never confirmed again (defence in depth)


@dataclass(frozen=True)
class StreamRecord:
    sequence_number: str
    ref: GuaranteeRef | None


@dataclass(frozen=True)
class RecordResult:
    record: StreamRecord
    disposition: Disposition
    outcome: GuaranteeOutcome | None = None
    reason: str | None = None
    shadow_failed: bool = False


@dataclass
class _Attempt:
    """What one attempt has done so far, so a failure mid-way is recorded truthfully."""

    decision: Decision | None = None
    shadow: Decision | None = None
    shadow_failed: bool = False
    decided_at_ms: int | None = None
    confirm_attempted: bool = False  # a confirm may have reached Flinks (outcome unknown, or a 409)


class GuaranteeProcessor:
    def __init__(
        self,
        *,
        store: GuaranteeStore,
        flinks: FlinksSessions,
        policy: DecisionPolicy,
        executor: Executor,
        shadow_policy: DecisionPolicy | None = None,
        finish_reserve_seconds: float = 3.0,
        review_timeout_seconds: int = 300,
        reconcile_delay_seconds: int = 900,
        confirm_settle_seconds: float = 20.0,
        on_credentials_rejected: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._flinks = flinks
        self._policy = policy
        self._shadow_policy = shadow_policy
        self._executor = executor
        self._finish_reserve = finish_reserve_seconds
        self._review_timeout_ms = review_timeout_seconds * 1000
        self._reconcile_delay_ms = reconcile_delay_seconds * 1000
        self._settle_ms = int(confirm_settle_seconds * 1000)
        self._on_credentials_rejected = on_credentials_rejected
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep

    def process_batch(
        self, records: Sequence[StreamRecord], *, deadline: float, lease_until_ms: int
    ) -> list[RecordResult]:
        """Sessions run concurrently; records of one session run in stream order, and once one of
        them must be retried the later ones are retried too, so a session never skips ahead. Every
        worker is waited for: none may still run when the invocation returns."""
        groups: dict[str, list[StreamRecord]] = {}
        for record in records:
            key = record.ref.session_id if record.ref else record.sequence_number
            groups.setdefault(key, []).append(record)
        futures: list[tuple[list[StreamRecord], Future[list[RecordResult]]]] = [
            (group, self._executor.submit(self._process_group, group, deadline, lease_until_ms))
            for group in groups.values()
        ]
        wait([future for _, future in futures])
        by_sequence: dict[str, RecordResult] = {}
        for group, future in futures:
            error = future.exception()
            if error is None:
                by_sequence.update((result.record.sequence_number, result) for result in future.result())
                continue
            if not isinstance(error, Exception):
                raise error  # the process is going down (SystemExit and the like): let it, all workers done
            # A bug, not a business outcome: its claim (if any) ends with the lease; retry the records.
            logger.error("worker failed unexpectedly; its records are retried", error=repr(error))
            by_sequence.update(
                (record.sequence_number, RecordResult(record, Disposition.RETRY, reason=repr(error)))
                for record in group
            )
        return [by_sequence[record.sequence_number] for record in records]

    def _process_group(
        self, group: list[StreamRecord], deadline: float, lease_until_ms: int
    ) -> list[RecordResult]:
        results: list[RecordResult] = []
        blocked = False
        for record in group:
            if blocked:
                results.append(
                    RecordResult(record, Disposition.RETRY, reason="an earlier record of the session")
                )
                continue
            result = self.process_record(record, deadline=deadline, lease_until_ms=lease_until_ms)
            blocked = result.disposition is Disposition.RETRY
            results.append(result)
        return results

    def process_record(self, record: StreamRecord, *, deadline: float, lease_until_ms: int) -> RecordResult:
        if record.ref is None:
            return RecordResult(record, Disposition.SKIPPED, reason="not a guarantee record")
        logger.thread_safe_append_keys(session_id=record.ref.session_id)
        try:
            return self._process(record, record.ref, deadline, lease_until_ms)
        finally:
            logger.thread_safe_remove_keys(["session_id"])

    def _process(  # noqa: PLR0911 - one return per way an attempt ends
        self, record: StreamRecord, ref: GuaranteeRef, deadline: float, lease_until_ms: int
    ) -> RecordResult:
        claim_id = str(uuid.uuid4())
        try:
            claim = self._claim(ref, claim_id, deadline, lease_until_ms)
        except (LeaseHeldError, PersistenceError) as error:
            logger.warning("guarantee not claimed; will retry", reason=str(error))
            return RecordResult(record, Disposition.RETRY, reason=str(error))
        if claim.result is ClaimResult.RECORDS_A_CONFIRM:
            logger.error("guarantee records a confirm but is not finished; refused", claim=claim.result.value)
            return RecordResult(record, Disposition.REFUSED, reason=claim.result.value)
        if claim.result is not ClaimResult.CLAIMED or claim.guarantee is None:
            logger.info("guarantee needs no work", claim=claim.result.value)
            return RecordResult(record, Disposition.SKIPPED, reason=claim.result.value)

        attempt = _Attempt()
        calls = self._flinks.for_session(ref.session_id, deadline=deadline - self._finish_reserve)
        try:
            outcome = self._answer(claim.guarantee, calls, attempt, claim.confirm_may_have_been_sent)
        except FlinksAuthError as error:
            # Our credentials, not the guarantee: Flinks may have rotated them before our secret was
            # updated (or within its cache age). Re-read the secret and let the stream retry.
            if self._on_credentials_rejected is not None:
                with contextlib.suppress(SecretError):  # unreadable now: the retry reads it again
                    self._on_credentials_rejected()
            return self._retry(record, ref, claim_id, attempt, f"Flinks refused our credentials: {error}")
        except FlinksConfirmOutcomeUnknownError as error:
            attempt.confirm_attempted = True
            settle_until = self._now_ms() + self._settle_ms
            return self._retry(record, ref, claim_id, attempt, str(error), settle_until_ms=settle_until)
        except FlinksPermanentError as error:
            outcome = self._failed(attempt, f"Flinks refused: {error}")
        except (FlinksTransientError, SecretError, PersistenceError) as error:
            return self._retry(record, ref, claim_id, attempt, str(error))
        return self._finish(
            record, ref=ref, claim_id=claim_id, guarantee=claim.guarantee, outcome=outcome, attempt=attempt
        )

    def _claim(self, ref: GuaranteeRef, claim_id: str, deadline: float, lease_until_ms: int) -> Claim:
        """Claim the guarantee. While another invocation holds a live lease, or a confirm that may have
        reached Flinks is still settling, wait until that ends or our own budget does."""
        while True:
            claim = self._store.claim(
                ref, claim_id=claim_id, now_ms=self._now_ms(), lease_until_ms=lease_until_ms
            )
            if claim.result not in (ClaimResult.HELD, ClaimResult.SETTLING):
                return claim
            wait_left = (claim.wait_until_ms - self._now_ms()) / 1000
            budget = deadline - self._monotonic() - self._finish_reserve
            if budget <= 0 or (claim.result is ClaimResult.SETTLING and wait_left > budget):
                raise LeaseHeldError(f"guarantee {claim.result.value} for {wait_left:.1f}s more")
            # A live lease may end early (its holder finishes): poll it. A settle time is fixed: sleep it out.
            pause = _HELD_POLL_SECONDS if claim.result is ClaimResult.HELD else wait_left
            self._sleep(max(0.05, min(pause, wait_left + 0.05, budget)))

    def _answer(
        self, guarantee: GuaranteeView, calls: FlinksSession, attempt: _Attempt, uncertain: bool
    ) -> GuaranteeOutcome:
        body = guarantee.body()
        carried = body.get("guaranteeDetails")
        carried_details = carried if isinstance(carried, Mapping) else None
        review = guarantee.review
        reviewed = review is not None and review.decision is not None
        webhook_facts = facts_from_session(None, carried_details, body)
        # The webhook's own facts replace /details only when they carry every fact the policy reads.
        needs_details = uncertain or (not reviewed and not self._policy.fields_read <= webhook_facts.keys())
        details = calls.details() if needs_details else None
        identity = GuaranteeIdentity.of_webhook(guarantee.ref.guarantee_key, body)

        if uncertain:
            at_flinks = self._decision_at_flinks(details, guarantee, identity)
            if at_flinks.recorded is RecordedDecision.OURS:
                return self._recorded(guarantee, attempt, at_flinks, details)
            operator_decided = reviewed and review is not None and _by_a_person(review.reviewer)
            if at_flinks.recorded is RecordedDecision.UNATTRIBUTABLE and not operator_decided:
                return self._held(at_flinks.evidence)

        if reviewed and review is not None and review.decision is not None:
            person = _by_a_person(review.reviewer)
            rule = MANUAL_REVIEW_RULE if person else REVIEW_TIMEOUT_RULE
            reason = "MANUAL_REVIEW" if person else "REVIEW_TIMEOUT"
            attempt.decision = Decision(review.decision, rule, {}, reason=reason)
        else:
            facts = facts_from_session(details, carried_details, body)
            attempt.decision = self._policy.decide(facts)
            attempt.shadow, attempt.shadow_failed = self._shadow_decide(facts)
        attempt.decided_at_ms = self._now_ms()
        decision = attempt.decision
        logger.info("guarantee decided", decision=decision.verdict.value, rule=decision.rule)
        if decision.verdict is Verdict.REVIEW:
            return self._review_requested(attempt)

        try:
            answer = calls.confirm(decision.verdict.accepted)
        except FlinksConflictError as conflict:
            attempt.confirm_attempted = True  # Flinks refused it as a conflict: it may hold a decision
            return self._after_conflict(guarantee, calls, attempt, identity, conflict)
        return self._confirmed(
            guarantee,
            attempt,
            flinks_session_id=answer.session_id,
            flinks_reference_id=answer.reference_id,
        )

    def _decision_at_flinks(
        self, details: Mapping[str, Any] | None, guarantee: GuaranteeView, identity: GuaranteeIdentity
    ) -> DecisionAtFlinks:
        first = decision_at_flinks(details, identity)
        if first.recorded is RecordedDecision.NONE:
            return first  # no decision at Flinks: nothing to attribute, no need to read the siblings
        answered = [
            GuaranteeIdentity.of_webhook(other.ref.guarantee_key, other.body())
            for other in self._store.session_guarantees(guarantee.ref.session_id)
            if other.ref != guarantee.ref and _may_have_been_confirmed(other)
        ]
        return decision_at_flinks(details, identity, answered) if answered else first

    def _recorded(
        self,
        guarantee: GuaranteeView,
        attempt: _Attempt,
        at_flinks: DecisionAtFlinks,
        details: Mapping[str, Any] | None,
    ) -> GuaranteeOutcome:
        """Flinks already holds this guarantee's decision: record it, never send it again."""
        accepted = bool(at_flinks.accepted)
        held = Verdict.of_answer(accepted)
        review = guarantee.review
        if review is not None and review.decision is not None and review.decision is not held:
            return self._failed(
                attempt,
                f"Flinks already records {held} for this guarantee; the review decided {review.decision}",
            )
        attempt.decision = Decision(
            held, RECOVERED_RULE, {"guaranteeAccepted": accepted}, reason="RECORDED_AT_FLINKS"
        )
        attempt.decided_at_ms = attempt.decided_at_ms or self._now_ms()
        logger.info("decision already recorded at Flinks", decision=held.value, evidence=at_flinks.evidence)
        return self._confirmed(
            guarantee,
            attempt,
            recovered=True,
            flinks_session_id=_text(details.get("sessionId")) if details else None,
            flinks_reference_id=_text(details.get("referenceId")) if details else None,
        )

    def _after_conflict(
        self,
        guarantee: GuaranteeView,
        calls: FlinksSession,
        attempt: _Attempt,
        identity: GuaranteeIdentity,
        conflict: FlinksConflictError,
    ) -> GuaranteeOutcome:
        """409 on confirm: what Flinks records decides between recorded, opposite, held and failed."""
        at_flinks = self._decision_at_flinks(calls.details(), guarantee, identity)
        decision = attempt.decision
        if at_flinks.recorded is RecordedDecision.UNATTRIBUTABLE:
            return self._held(f"confirm answered 409 and {at_flinks.evidence}")
        if at_flinks.recorded is RecordedDecision.NONE or decision is None:
            return self._failed(attempt, f"Flinks refused: {conflict}; /details shows no decision")
        if Verdict.of_answer(bool(at_flinks.accepted)) is not decision.verdict:
            return self._failed(
                attempt, f"Flinks already records the opposite decision ({conflict}; {at_flinks.evidence})"
            )
        return self._confirmed(guarantee, attempt, recovered=True)

    def _shadow_decide(self, facts: Mapping[str, object]) -> tuple[Decision | None, bool]:
        if self._shadow_policy is None:
            return None, False
        try:
            return self._shadow_policy.decide(facts), False
        except Exception as error:
            logger.error("shadow policy failed; the live decision stands", error=repr(error))
            return None, True

    def _review_requested(self, attempt: _Attempt) -> GuaranteeOutcome:
        decided_at = attempt.decided_at_ms or self._now_ms()
        return GuaranteeOutcome(
            status=GuaranteeStatus.REVIEW,
            change=ChangeKind.REVIEW_REQUESTED,
            decision=attempt.decision,
            shadow=attempt.shadow,
            decided_at_ms=decided_at,
            follow_up=FollowUp(FollowUpQueue.REVIEW, decided_at + self._review_timeout_ms),
        )

    def _held(self, why: str) -> GuaranteeOutcome:
        """An uncertain recovery: a person decides; no fallback ever applies (it could contradict Flinks)."""
        logger.warning("guarantee held for a person: recovery uncertain", reason=why)
        return GuaranteeOutcome(
            status=GuaranteeStatus.REVIEW,
            change=ChangeKind.HELD,
            hold_reason=f"a confirm may have reached Flinks, and {why}",
            follow_up=FollowUp(FollowUpQueue.HOLD, self._now_ms()),
        )

    def _confirmed(
        self,
        guarantee: GuaranteeView,
        attempt: _Attempt,
        *,
        recovered: bool = False,
        flinks_session_id: str | None = None,
        flinks_reference_id: str | None = None,
    ) -> GuaranteeOutcome:
        confirmed_at_ms = self._now_ms()
        return GuaranteeOutcome(
            status=GuaranteeStatus.CONFIRMED,
            change=ChangeKind.RECOVERED if recovered else ChangeKind.CONFIRMED,
            decision=attempt.decision,
            shadow=attempt.shadow,
            decided_at_ms=attempt.decided_at_ms or confirmed_at_ms,
            confirmed_at_ms=confirmed_at_ms,
            flinks_session_id=flinks_session_id,
            flinks_reference_id=flinks_reference_id,
            recovered_from_details=recovered,
            webhook_to_confirm_ms=max(0, confirmed_at_ms - guarantee.received_at_ms),
            follow_up=FollowUp(FollowUpQueue.RECONCILE, confirmed_at_ms + self._reconcile_delay_ms),
        )

    def _failed(self, attempt: _Attempt, reason: str) -> GuaranteeOutcome:
        return GuaranteeOutcome(
            status=GuaranteeStatus.FAILED,
            change=ChangeKind.FAILED,
            decision=attempt.decision,
            shadow=attempt.shadow,
            decided_at_ms=attempt.decided_at_ms,
            failure_reason=reason[:500],
            follow_up=FollowUp(FollowUpQueue.RECONCILE, self._now_ms() + self._reconcile_delay_ms),
        )

    def _finish(
        self,
        record: StreamRecord,
        *,
        ref: GuaranteeRef,
        claim_id: str,
        guarantee: GuaranteeView,
        outcome: GuaranteeOutcome,
        attempt: _Attempt,
    ) -> RecordResult:
        try:
            written = self._store.finish(ref, claim_id=claim_id, outcome=outcome, now_ms=self._now_ms())
        except PersistenceError as error:
            # The confirm may have gone out but the record did not: release the claim flagged, so the
            # retry reads /details and records the outcome without confirming again (if the release
            # fails too, the retry takes over once the lease ends).
            logger.error("outcome not recorded; the retry will recover it from Flinks", reason=str(error))
            attempt.confirm_attempted = attempt.confirm_attempted or outcome.confirmed_at_ms is not None
            return self._retry(record, ref, claim_id, attempt, f"outcome not recorded: {error}")
        if not written:
            logger.error("claim lost before the outcome was recorded", status=outcome.status.value)
        logger.info(
            "guarantee finished",
            status=outcome.status.value,
            decision=outcome.decision.verdict.value if outcome.decision else None,
            rule=outcome.decision.rule if outcome.decision else None,
            recovered=outcome.recovered_from_details,
            webhook_to_confirm_ms=outcome.webhook_to_confirm_ms,
            failure_reason=outcome.failure_reason,
            attempt_number=guarantee.attempts,
        )
        disposition = {
            GuaranteeStatus.CONFIRMED: Disposition.CONFIRMED,
            GuaranteeStatus.FAILED: Disposition.FAILED,
            GuaranteeStatus.REVIEW: Disposition.REVIEW,
        }[outcome.status]
        return RecordResult(
            record,
            disposition,
            outcome,
            reason=outcome.failure_reason or outcome.hold_reason,
            shadow_failed=attempt.shadow_failed,
        )

    def _retry(
        self,
        record: StreamRecord,
        ref: GuaranteeRef,
        claim_id: str,
        attempt: _Attempt,
        reason: str,
        *,
        settle_until_ms: int | None = None,
    ) -> RecordResult:
        release = Release(
            reason=reason[:500], confirm_attempted=attempt.confirm_attempted, settle_until_ms=settle_until_ms
        )
        try:
            self._store.release(ref, claim_id=claim_id, now_ms=self._now_ms(), release=release)
        except PersistenceError as error:
            # The lease still expires at the invocation's deadline, so the retry can claim it then.
            logger.warning("claim not released; it expires with the lease", reason=str(error))
        logger.warning(
            "guarantee attempt failed transiently; claim released for the retry",
            reason=reason,
            confirm_attempted=attempt.confirm_attempted,
            settle_until_ms=settle_until_ms,
        )
        return RecordResult(record, Disposition.RETRY, reason=reason, shadow_failed=attempt.shadow_failed)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _may_have_been_confirmed(guarantee: GuaranteeView) -> bool:
    return (
        guarantee.confirm is not None
        or guarantee.confirm_attempted
        or guarantee.status in (GuaranteeStatus.DECIDING, GuaranteeStatus.CONFIRMED)
    )


def _by_a_person(reviewer: str | None) -> bool:
    return reviewer is not None and Actor(reviewer).is_person


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
